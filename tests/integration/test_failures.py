"""Crashes and outages: kill -9 at random moments (consumer or its writer process),
MariaDB down mid-stream."""

from __future__ import annotations

import math
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    db_rows,
    expected_decisions,
    keyed,
    payments_from,
    produce,
)

pytestmark = pytest.mark.integration


def test_kill_9_five_times_loses_nothing_and_scores_as_uninterrupted(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model
):
    """SIGKILL at random moments, restart each time: every payment once, same scores.

    One partition keeps the processing order equal to the production order, so the
    rebuilt feature state must reproduce an uninterrupted run exactly. Each run is given a
    share of the payments as it starts (with all of them produced at once, a fast first run
    decided everything and the others waited out their 60 s limits).
    """
    topic = new_topic(1)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    payments = payments_from(small_world, 25, 2500)
    rng = random.Random(7)
    args = ("--batch-size", "25", "--max-wait-ms", "50")
    kills = 0
    for share in range(5):
        produce(kafka_bootstrap, topic, keyed(payments[share * 500 : (share + 1) * 500]))
        before = len(db_rows(db_url)["decisions"])
        proc = consume_runner.start(*args)
        consume_runner.wait_until(proc, lambda b=before: len(db_rows(db_url)["decisions"]) > b, 60)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
    assert kills >= 3
    assert consume_runner.run(*args, "--idle-exit", "4") == 0, consume_runner.logs()

    _assert_stored_once_as_uninterrupted(db_url, small_model, payments)


def _assert_stored_once_as_uninterrupted(db_url, model_path, payments) -> None:
    """Every payment stored exactly once, nothing else, with an uninterrupted run's scores."""
    rows = db_rows(db_url)
    ids = [tx for tx, *_ in rows["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)
    assert not rows["duplicates"] and not rows["dead_letters"]
    expected = expected_decisions(model_path, payments)
    for tx, status, score, _, _ in rows["decisions"]:
        assert status == expected[tx].status, tx
        assert math.isclose(score, expected[tx].score, rel_tol=1e-5, abs_tol=1e-6), tx


def _writer_child(consumer_pid: int) -> int | None:
    """Pid of the consumer's database writer process (a spawned child), if running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == consumer_pid and b"spawn_main" in cmdline:
            return int(entry.name)
    return None


def test_writer_process_killed_mid_stream_loses_nothing(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model
):
    """SIGKILL the consumer's writer process again and again while batches are staged in it.

    The consumer treats each death as an outage: it starts a new writer process, sends it
    the batches it had staged and not yet written, and writes them in order. Every payment
    ends stored once, with the scores of an uninterrupted run. Each kill follows the first
    write of a fresh share of the payments, so batches are in flight whatever the machine's
    speed (with all of them produced at once, a fast consumer had finished before the third).
    """
    topic = new_topic(1)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    payments = payments_from(small_world, 25, 2500)
    proc = consume_runner.start("--batch-size", "25", "--max-wait-ms", "50", "--idle-exit", "6")
    rng = random.Random(11)
    killed: set[int] = set()
    for share in range(4):
        before = len(db_rows(db_url)["decisions"])
        produce(kafka_bootstrap, topic, keyed(payments[share * 500 : (share + 1) * 500]))
        consume_runner.wait_until(proc, lambda b=before: len(db_rows(db_url)["decisions"]) > b, 60)
        child = _writer_child(proc.pid)
        if child is None or proc.poll() is not None:
            break
        os.kill(child, signal.SIGKILL)
        killed.add(child)
        time.sleep(rng.uniform(0.2, 1.0))
    assert len(killed) >= 3, consume_runner.logs()
    produce(kafka_bootstrap, topic, keyed(payments[2000:]))
    assert proc.wait(timeout=180) == 0, consume_runner.logs()
    assert "writer process stopped" in consume_runner.logs(tail=None)

    _assert_stored_once_as_uninterrupted(db_url, small_model, payments)


def test_database_outage_mid_stream(
    consume_runner, kafka_bootstrap, topic, db_url, db_server, small_world
):
    """MariaDB stopped for ~10 s while consuming: the consumer waits, then nothing is lost."""
    payments = payments_from(small_world, 15, 3000)
    produce(kafka_bootstrap, topic, keyed(payments))
    proc = consume_runner.start("--batch-size", "30", "--max-wait-ms", "50", "--idle-exit", "6")
    assert consume_runner.wait_until(proc, lambda: len(db_rows(db_url)["decisions"]) > 100, 90), (
        consume_runner.logs()
    )
    db_server.stop()
    try:
        time.sleep(10)
        assert proc.poll() is None, consume_runner.logs()  # still alive, retrying
    finally:
        db_server.start()
    assert proc.wait(timeout=180) == 0, consume_runner.logs()
    rows = db_rows(db_url)
    ids = [tx for tx, *_ in rows["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)
    assert not rows["duplicates"] and not rows["dead_letters"]
    assert "retrying" in consume_runner.logs(tail=None)


def _topic_ids(bootstrap: str, topic: str, want: int, timeout: float = 60) -> set[str]:
    """Transaction ids of the decisions-topic messages (read until ``want`` distinct ones)."""
    import json

    from kafka import KafkaConsumer

    reader = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < want and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=500).values():
                seen.update(json.loads(r.value)["transaction_id"] for r in records)
    finally:
        reader.close()
    return seen


def test_broker_restart_mid_stream(
    consume_runner, kafka_bootstrap, kafka_server, topic, new_topic, db_url, small_world
):
    """Kafka stopped for ~8 s while consuming and publishing: the consumer keeps running,
    nothing is lost or written twice, and every stored decision is in the decisions topic."""
    decisions_topic = new_topic(3, prefix="ps-decisions")
    consume_runner.env["PAYSCORE_PUBLISH_DECISIONS"] = "true"
    consume_runner.env["PAYSCORE_DECISIONS_TOPIC"] = decisions_topic
    payments = payments_from(small_world, 12, 3000)
    produce(kafka_bootstrap, topic, keyed(payments[:2000]))
    proc = consume_runner.start("--batch-size", "40", "--max-wait-ms", "50")
    assert consume_runner.wait_until(proc, lambda: len(db_rows(db_url)["decisions"]) > 100, 90), (
        consume_runner.logs()
    )
    kafka_server.stop()
    try:
        time.sleep(8)
        assert proc.poll() is None, consume_runner.logs()
    finally:
        kafka_server.start()
    produce(kafka_bootstrap, topic, keyed(payments[2000:]))
    done = consume_runner.wait_until(
        proc, lambda: len(db_rows(db_url)["decisions"]) >= len(payments), 180
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, consume_runner.logs()
    assert done, consume_runner.logs()
    rows = db_rows(db_url)
    ids = [tx for tx, *_ in rows["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)
    assert not rows["duplicates"] and not rows["dead_letters"]
    assert _topic_ids(kafka_bootstrap, decisions_topic, len(ids)) >= set(ids)
