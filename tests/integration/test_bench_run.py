"""``payscore bench`` end to end on the real broker and MariaDB, small: it runs, counts every
payment, and leaves no scratch database or topic behind. (Figures are not asserted: speed is
for docs/benchmarks.md, not for tests.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from payscore.bench import BenchOptions, run_bench
from payscore.config import Settings
from payscore.stream.kafka import make_admin
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def test_bench_runs_end_to_end_and_cleans_up(
    kafka_bootstrap: str, mariadb_url: str, small_model: str, _db_admin_engine: Any
) -> None:
    settings = Settings(
        database_url=mariadb_url, kafka_bootstrap_servers=kafka_bootstrap, model_path=small_model
    )
    steps: list[str] = []
    report = run_bench(
        settings,
        BenchOptions(count=1_200, batch_size=200, rate=300, paced_count=600, rounds=2),
        steps.append,
    )
    assert report.backend == "mysql"
    assert report.consumer_decided == 1_200
    assert report.paced_decided == 600  # every paced payment's latency was measured
    assert report.db_ceiling > 0 and report.consumer_rate > 0 and report.produce_rate > 0
    assert report.consumer_latency_ms is not None and report.paced_latency_ms is not None
    p50, p95, p99 = report.paced_latency_ms
    assert 0 < p50 <= p95 <= p99
    # Three ceilings (before the first round and after each) and two consumer runs, as medians.
    assert len(report.db_ceilings) == 3 and len(report.consumer_rates) == 2
    assert report.db_ceiling == sorted(report.db_ceilings)[1]
    assert report.consumer_rate == sum(report.consumer_rates) / 2
    assert any(n.startswith("database ceiling") and "(median" in n for n in report.notes)
    numbered = [s.split(" ")[0] for s in steps if s[0].isdigit()]
    assert numbered == ["1/4", "2/4", "3/4", "3/4", "4/4"]
    rounds = [s[-len("(round 1 of 2)") :] for s in steps if s.startswith("3/4")]
    assert rounds == ["(round 1 of 2)", "(round 2 of 2)"]

    with _db_admin_engine.connect() as conn:
        left = conn.execute(text("SHOW DATABASES LIKE 'payscore\\_bench\\_%'")).scalars().all()
    assert left == []
    admin = make_admin(settings)
    try:  # topic deletion completes asynchronously on the broker
        gone = wait_until(
            lambda: not [t for t in admin.list_topics() if t.startswith("payscore-bench-")], 30
        )
        assert gone, admin.list_topics()
    finally:
        admin.close()
