"""A real Prometheus scrapes ``payscore consume --metrics-port``; what its HTTP API answers
agrees with the database: decisions by status, dead letters, duplicates, rebuild rows."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest

from tests.bed._proc import free_ports
from tests.bed.prometheus import PrometheusServer
from tests.integration.conftest import db_rows, keyed, payments_from, produce

pytestmark = pytest.mark.integration

MALFORMED = [(b"c-bad", b"{not json"), (b"c-bad", b'{"transaction_id": "only-an-id"}')]


def _by_label(prometheus: PrometheusServer, expr: str, label: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1]) for r in prometheus.query(expr)}


def test_prometheus_reads_what_the_database_holds(
    consume_runner: Any,
    kafka_bootstrap: str,
    new_topic: Any,
    db_url: str,
    small_world: Any,
    prometheus: PrometheusServer,
) -> None:
    topic = new_topic(2)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    payments = payments_from(small_world, 10, 300)
    messages = keyed(payments[:150]) + MALFORMED + keyed(payments[150:]) + keyed(payments[:25])
    produce(kafka_bootstrap, topic, messages)
    first_port, second_port = free_ports(2)

    proc = consume_runner.start(
        "--batch-size", "50", "--max-wait-ms", "100", "--metrics-port", str(first_port)
    )
    instance = prometheus.scrape(first_port)
    where = f'{{instance="{instance}"}}'

    def stored() -> int:
        rows = db_rows(db_url)
        return sum(len(rows[k]) for k in ("decisions", "duplicates", "dead_letters"))

    assert consume_runner.wait_until(proc, lambda: stored() == len(messages), 120), (
        consume_runner.logs()
    )
    rows = db_rows(db_url)
    expected: dict[str, Any] = {
        "statuses": {k: float(n) for k, n in Counter(r.status for r in rows["decisions"]).items()},
        "dead_letters": float(len(rows["dead_letters"])),
        "duplicates": float(len(rows["duplicates"])),
    }
    seen: dict[str, Any] = {}

    def scraped_agrees() -> bool:
        seen["statuses"] = _by_label(prometheus, f"payscore_payments_total{where}", "status")
        seen["dead_letters"] = prometheus.value(f"sum(payscore_dead_letters_total{where})")
        seen["duplicates"] = prometheus.value(f"payscore_duplicates_total{where}")
        return seen == expected

    # Scraped every second; generous for a loaded machine.
    assert consume_runner.wait_until(proc, scraped_agrees, 90), (seen, expected)
    assert sum(expected["statuses"].values()) == len(payments)
    assert expected["dead_letters"] == len(MALFORMED)
    assert expected["duplicates"] == 25
    assert prometheus.value(f"up{where}") == 1.0
    # One rebuild an assignment; a loaded machine may add a re-join (and so a rebuild).
    rebuilds = prometheus.value(f"payscore_state_rebuilds_total{where}")
    assert rebuilds is not None and rebuilds >= 1.0
    model = prometheus.query(f"payscore_model_info{where}")
    assert len(model) == 1 and model[0]["metric"]["version"], model
    lag = _by_label(prometheus, f"payscore_consumer_lag{where}", "partition")
    assert set(lag) <= {"0", "1"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, consume_runner.logs()

    # A second consumer of the group rebuilds its feature state from the stored payments.
    again = consume_runner.start("--max-wait-ms", "100", "--metrics-port", str(second_port))
    second = f'{{instance="{prometheus.scrape(second_port)}"}}'
    rebuilt: dict[str, float | None] = {}

    def rebuild_scraped() -> bool:
        rebuilt["rows"] = prometheus.value(f"payscore_state_last_rebuild_rows{second}")
        rebuilt["total"] = prometheus.value(f"payscore_state_rebuild_rows_total{second}")
        return rebuilt["rows"] is not None and rebuilt["rows"] > 0

    assert consume_runner.wait_until(again, rebuild_scraped, 90), (rebuilt, consume_runner.logs())
    assert rebuilt["rows"] == len(rows["decisions"])
    assert rebuilt["total"] is not None and rebuilt["total"] >= rebuilt["rows"]
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0, consume_runner.logs()
