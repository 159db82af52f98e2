"""``payscore bench --consumers 2`` on the real broker and MariaDB, small: both group sizes
store every payment, and no scratch database or topic is left. (Figures are not asserted.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from payscore.bench.scaleout import run_consumers_bench
from payscore.config import Settings

pytestmark = pytest.mark.integration


def test_one_and_two_consumers_each_store_every_payment(
    kafka_bootstrap: str, mariadb_url: str, small_model: str, _db_admin_engine: Any
) -> None:
    settings = Settings(
        database_url=mariadb_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        model_path=small_model,
        topic_partitions=2,
    )
    steps: list[str] = []
    report = run_consumers_bench(settings, 800, 2, 1, 100, steps.append)
    # measure_group raises unless every payment was stored: each run got them all.
    assert sorted(report.rates) == [1, 2]
    assert all(len(r) == 1 and r[0] > 0 for r in report.rates.values())
    assert len(report.ceilings) == 3  # before the first run and after each
    assert [s for s in steps if s.startswith("round")] == [
        "round 1 of 1: 1 consumer(s) over 800 payments",
        "round 1 of 1: 2 consumer(s) over 800 payments",
    ]
    with _db_admin_engine.connect() as conn:
        left = conn.execute(text("SHOW DATABASES LIKE 'payscore\\_bench\\_%'")).scalars().all()
    assert left == []
