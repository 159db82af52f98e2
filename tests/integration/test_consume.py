"""``payscore consume`` against real Kafka and MariaDB: every message accounted for once."""

from __future__ import annotations

import math
import signal
import time

import pytest

from tests.integration.conftest import (
    db_rows,
    expected_decisions,
    keyed,
    payments_from,
    produce,
)

pytestmark = pytest.mark.integration

MALFORMED = [
    (b"c-bad", b"this is not json"),
    (b"c-bad", b'{"transaction_id": "only-an-id"}'),
    (
        b"c-bad",
        b'{"transaction_id":"n1","customer_id":"c","terminal_id":"t","amount":"-5",'
        b'"currency":"EUR","event_time":"2018-05-01T00:00:00+00:00"}',
    ),
    (None, b"x" * 20_000),
]


def test_accounting_and_same_decisions_as_in_process(
    consume_runner,
    kafka_bootstrap,
    new_topic,
    db_url,
    small_world,
    small_model,
    group_id,
    kafka_admin,
):
    """decisions + duplicates + dead letters == messages produced; statuses as the Scorer."""
    topic = new_topic(1)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    payments = payments_from(small_world, 20, 1200)
    messages = keyed(payments[:600]) + MALFORMED + keyed(payments[600:])
    messages += keyed(payments[100:130])  # re-sent: duplicates
    produce(kafka_bootstrap, topic, messages)

    code = consume_runner.run("--batch-size", "97", "--max-wait-ms", "100", "--idle-exit", "4")
    assert code == 0, consume_runner.logs()

    rows = db_rows(db_url)
    assert len(rows["decisions"]) == len(payments)
    assert len(rows["duplicates"]) == 30
    assert len(rows["dead_letters"]) == len(MALFORMED)
    assert len(rows["decisions"]) + len(rows["duplicates"]) + len(rows["dead_letters"]) == len(
        messages
    )
    offsets = sorted(
        [o for _, _, _, _, o in rows["decisions"]]
        + [o for _, o in rows["duplicates"]]
        + [o for _, o, _ in rows["dead_letters"]]
    )
    assert offsets == list(range(len(messages)))  # each message exactly once
    expected = expected_decisions(small_model, payments)
    for tx, status, score, _, _ in rows["decisions"]:
        assert status == expected[tx].status, tx
        assert math.isclose(score, expected[tx].score, rel_tol=1e-5, abs_tol=1e-6), tx
    assert {kind for _, _, kind in rows["dead_letters"]} <= {"json", "schema", "too_large"}
    # Kafka's committed offset (informational, sent at most once a second and on the way out)
    # ends where the database's does, for offset-based lag tools.
    committed = kafka_admin.list_group_offsets(group_id)[group_id]
    assert {tp.partition: o.offset for tp, o in committed.items() if tp.topic == topic} == {
        0: len(messages)
    }


def test_two_consumers_one_killed_totals_add_up(
    consume_runner, kafka_bootstrap, topic, db_url, small_world
):
    """3 partitions, 2 consumers in one group, one killed mid-stream: nothing lost or twice."""
    payments = payments_from(small_world, 10, 3000)
    produce(kafka_bootstrap, topic, keyed(payments))
    args = ("--batch-size", "50", "--max-wait-ms", "100")
    # Well past the 10 s session timeout, so the group notices the dead member first, even
    # on a loaded machine where the rebalance that follows takes a while.
    first = consume_runner.start(*args, "--idle-exit", "40")
    second = consume_runner.start(*args)
    assert consume_runner.wait_until(first, lambda: len(db_rows(db_url)["decisions"]) > 300, 90), (
        consume_runner.logs()
    )
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    assert first.wait(timeout=180) == 0, consume_runner.logs()
    rows = db_rows(db_url)
    ids = [tx for tx, *_ in rows["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)
    assert not rows["duplicates"] and not rows["dead_letters"]


def test_sigterm_exits_zero_after_writing(
    consume_runner, kafka_bootstrap, topic, db_url, small_world
):
    payments = payments_from(small_world, 5, 2000)
    produce(kafka_bootstrap, topic, keyed(payments))
    proc = consume_runner.start("--batch-size", "40", "--max-wait-ms", "100")
    assert consume_runner.wait_until(proc, lambda: len(db_rows(db_url)["decisions"]) > 0, 90), (
        consume_runner.logs()
    )
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, consume_runner.logs()
    stored = len(db_rows(db_url)["decisions"])
    # A restart finishes the rest: together exactly every payment once.
    assert consume_runner.run("--batch-size", "200", "--idle-exit", "4") == 0
    rows = db_rows(db_url)
    assert 0 < stored <= len(rows["decisions"]) == len(payments)
    assert not rows["duplicates"]
