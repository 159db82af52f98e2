"""``payscore consume --metrics-port``: what Prometheus would scrape agrees with the database."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import db_rows, keyed, payments_from, produce

pytestmark = pytest.mark.integration

MALFORMED = [(b"c-bad", b"this is not json"), (b"c-bad", b'{"transaction_id": "only-an-id"}')]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - a local test URL
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def _totals(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in (
                "payscore_payments_total",
                "payscore_dead_letters_total",
                "payscore_send_to_commit_seconds_count",
            ):
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def test_metrics_match_the_database_and_readyz_once_positioned(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world
):
    topic = new_topic(2)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_LOG_FORMAT"] = "json"
    payments = payments_from(small_world, 10, 400)
    messages = keyed(payments[:200]) + MALFORMED + keyed(payments[200:])
    sent_from = time.time()
    produce(kafka_bootstrap, topic, messages)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    proc = consume_runner.start(
        "--batch-size", "50", "--max-wait-ms", "100", "--metrics-port", str(port)
    )
    assert consume_runner.wait_until(proc, lambda: _get(base + "/readyz")[0] == 200, 60), (
        consume_runner.logs()
    )
    assert _get(base + "/healthz")[0] == 200

    def stored() -> int:
        rows = db_rows(db_url)
        return len(rows["decisions"]) + len(rows["dead_letters"])

    assert consume_runner.wait_until(proc, lambda: stored() == len(messages), 60), (
        consume_runner.logs()
    )
    rows = db_rows(db_url)
    expected = {
        "payscore_payments_total": float(len(rows["decisions"])),
        "payscore_dead_letters_total": float(len(rows["dead_letters"])),
        # One send-to-commit latency a decided payment (the producer stamps CreateTime).
        "payscore_send_to_commit_seconds_count": float(len(rows["decisions"])),
    }
    # The counters follow the database commit by at most one turn of the loop.
    scraped: dict[str, float] = {}

    def agrees() -> bool:
        code, text = _get(base + "/metrics")
        scraped.update(_totals(text) if code == 200 else {})
        return scraped == expected

    assert consume_runner.wait_until(proc, agrees, 30), (scraped, expected)
    assert expected == {
        "payscore_payments_total": len(payments),
        "payscore_dead_letters_total": len(MALFORMED),
        "payscore_send_to_commit_seconds_count": len(payments),
    }
    code, text = _get(base + "/metrics")
    sums = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.endswith("_seconds_sum")
    }
    # Every payment was sent before the consumer started and committed before now, so each
    # latency lies between zero and the time since the first send.
    longest = time.time() - sent_from + 1.0  # a second for clock granularity (ms stamps)
    assert 0 < sums["payscore_send_to_commit_seconds_sum"] <= len(payments) * longest
    assert sums["payscore_poll_to_commit_seconds_sum"] <= len(messages) * longest
    assert 'payscore_model_info{version="' in text
    assert "payscore_poll_to_commit_seconds_count" in text

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, consume_runner.logs()
    # The log lines (stderr) are JSON objects; the console's result lines (stdout) are not logs.
    output = (consume_runner.log_dir / "consume-0.log").read_text()
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(
        e["logger"] == "payscore.stream.consumer" and e["message"].startswith("positioned")
        for e in entries
    ), output
