"""The consumer's start (topics it writes) and stop (exit codes) against the real services."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from payscore.config import Settings
from payscore.stream.kafka import max_message_bytes, partition_count
from tests.integration.conftest import db_rows, keyed, payments_from, produce

pytestmark = pytest.mark.integration

BAD = [(b"c-bad", b"not json")]


def test_a_missing_dead_letter_topic_is_created_like_the_input_topic(
    consume_runner, kafka_bootstrap, kafka_admin, db_url, small_world
):
    """The test bed's broker does not auto-create topics: the consumer creates the
    dead-letter topic with the input topic's partitions and size limit, and uses it."""
    from kafka.admin import NewTopic

    topic, dlq_topic = (f"ps-{name}-{uuid.uuid4().hex[:12]}" for name in ("in", "dlq"))
    kafka_admin.create_topics(
        [NewTopic(topic, 2, 1, topic_configs={"max.message.bytes": "3000000"})],
        wait_for_metadata=True,
    )
    consume_runner.env.update(PAYSCORE_INPUT_TOPIC=topic, PAYSCORE_DLQ_TOPIC=dlq_topic)
    payments = payments_from(small_world, 20, 40)
    produce(kafka_bootstrap, topic, keyed(payments[:20]) + BAD + keyed(payments[20:]))

    assert consume_runner.run("--idle-exit", "4") == 0, consume_runner.logs()

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    assert partition_count(settings, dlq_topic) == 2
    assert max_message_bytes(settings, dlq_topic) == 3_000_000
    rows = db_rows(db_url)
    assert len(rows["decisions"]) == len(payments) and len(rows["dead_letters"]) == 1


def test_a_missing_dead_letter_topic_with_creation_off_refuses_to_start(
    consume_runner, kafka_bootstrap, db_url
):
    missing = f"ps-nowhere-{uuid.uuid4().hex[:12]}"
    consume_runner.env.update(PAYSCORE_DLQ_TOPIC=missing, PAYSCORE_CREATE_TOPICS="false")
    proc = consume_runner.start("--idle-exit", "4")
    assert proc.wait(timeout=120) == 1, consume_runner.logs()
    lines = [
        line for line in consume_runner.logs(tail=None).splitlines() if line.startswith("error:")
    ]
    assert lines == [
        f"error: topic {missing!r} does not exist; create it (with the input topic's "
        "partitions and max.message.bytes) or set create_topics = true"
    ], consume_runner.logs()
    assert partition_count(Settings(kafka_bootstrap_servers=kafka_bootstrap), missing) == 0
    assert db_rows(db_url)["decisions"] == []


def test_a_stop_during_a_database_outage_exits_4_and_says_what_is_read_again(
    consume_runner, kafka_bootstrap, topic, db_url, db_server, small_world
):
    """SIGTERM while the database is down: not a clean stop. Exit code 4 and the count of
    messages left uncommitted; the next consumer decides them, and nothing is doubled."""
    payments = payments_from(small_world, 15, 1500)
    produce(kafka_bootstrap, topic, keyed(payments))
    proc = consume_runner.start("--batch-size", "30", "--max-wait-ms", "50")
    assert consume_runner.wait_until(proc, lambda: len(db_rows(db_url)["decisions"]) > 100, 90), (
        consume_runner.logs()
    )
    db_server.stop()
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 4, consume_runner.logs()
    finally:
        db_server.start()
    said = [
        ln for ln in consume_runner.logs(tail=None).splitlines() if "stopped before finishing" in ln
    ]
    assert said and "not committed, read again by the next consumer" in said[-1], said
    assert int(said[-1].split("finishing: ")[1].split()[0]) >= 1

    assert consume_runner.run("--idle-exit", "4") == 0, consume_runner.logs()
    ids = [tx for tx, *_ in db_rows(db_url)["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)


def test_a_dead_letter_topic_deleted_while_running_is_created_again(
    consume_runner, kafka_bootstrap, kafka_admin, topic, db_url, small_world
):
    dlq_topic = consume_runner.env["PAYSCORE_DLQ_TOPIC"]
    payments = payments_from(small_world, 20, 60)
    produce(kafka_bootstrap, topic, keyed(payments[:30]))
    proc = consume_runner.start("--batch-size", "10", "--max-wait-ms", "50", "--idle-exit", "25")
    assert consume_runner.wait_until(proc, lambda: len(db_rows(db_url)["decisions"]) >= 30, 90), (
        consume_runner.logs()
    )
    kafka_admin.delete_topics([dlq_topic])
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    deadline = time.monotonic() + 30
    while partition_count(settings, dlq_topic) and time.monotonic() < deadline:
        time.sleep(0.5)
    produce(kafka_bootstrap, topic, BAD + keyed(payments[30:]))
    assert proc.wait(timeout=240) == 0, consume_runner.logs()
    assert "does not exist; creating it" in consume_runner.logs(tail=None)
    rows = db_rows(db_url)
    assert len(rows["decisions"]) == len(payments) and len(rows["dead_letters"]) == 1
    assert partition_count(settings, dlq_topic) > 0
