"""Restarts that restore a feature snapshot: kill -9 after a snapshot, and a corrupt snapshot
falling back to the full replay; both must store the scores of an uninterrupted run."""

from __future__ import annotations

import random
import signal
import time

import pytest
from sqlalchemy import create_engine, func, select, update

from payscore.store.schema import feature_snapshot_chunks, feature_snapshots
from tests.integration.conftest import db_rows, keyed, payments_from, produce
from tests.integration.test_failures import _assert_stored_once_as_uninterrupted

pytestmark = pytest.mark.integration

ARGS = ("--batch-size", "25", "--max-wait-ms", "50")


def _snapshots(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feature_snapshots)).scalar())
    finally:
        engine.dispose()


def test_kill_9_after_a_snapshot_restores_it_and_scores_as_uninterrupted(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model
):
    """Snapshots every 0.3 s; SIGKILL once one is stored and more was decided after it. Each
    restart restores the snapshot, replays what followed, and decides the rest as before.
    Each run is given its share of the payments as it starts: a consumer that had decided them
    all before the first kill left the later runs waiting out their 90 s limits for nothing."""
    topic = new_topic(1)  # one partition: processing order = production order, as kill -9 test
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_SNAPSHOT_INTERVAL_SECONDS"] = "0.3"
    payments = payments_from(small_world, 25, 2500)
    rng = random.Random(11)
    kills = 0
    for share in range(3):
        produce(kafka_bootstrap, topic, keyed(payments[share * 700 : (share + 1) * 700]))
        before = len(db_rows(db_url)["decisions"])
        seen = _newest_snapshot(db_url)
        proc = consume_runner.start(*ARGS)
        # A snapshot written in this run (saving replaces the old one: watch its id instead).
        consume_runner.wait_until(proc, lambda s=seen: _newest_snapshot(db_url) > s, 90)
        consume_runner.wait_until(
            proc, lambda b=before: len(db_rows(db_url)["decisions"]) > b + 50, 90
        )
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
    assert kills >= 2, consume_runner.logs()
    produce(kafka_bootstrap, topic, keyed(payments[2100:]))
    assert consume_runner.run(*ARGS, "--idle-exit", "4") == 0, consume_runner.logs()
    logs = consume_runner.logs(tail=None)
    assert "restored feature state from snapshot" in logs, consume_runner.logs()
    _assert_stored_once_as_uninterrupted(db_url, small_model, payments)


def _newest_snapshot(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.max(feature_snapshots.c.id))).scalar() or 0)
    finally:
        engine.dispose()


def test_corrupt_snapshot_falls_back_to_the_full_replay(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model
):
    topic = new_topic(1)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_SNAPSHOT_INTERVAL_SECONDS"] = "0.3"
    payments = payments_from(small_world, 25, 1500)
    # The first 800 arrive over some 3 s, so the run meets several snapshot intervals (a
    # compaction covers row ids seen an interval before) whatever the machine's speed.
    first = consume_runner.start(*ARGS, "--max-messages", "800")
    log = consume_runner.log_dir / "consume-0.log"
    assert consume_runner.wait_until(
        first, lambda: "positioned" in log.read_text(errors="replace"), 90
    ), consume_runner.logs()
    for start in range(0, 800, 50):
        produce(kafka_bootstrap, topic, keyed(payments[start : start + 50]))
        time.sleep(0.2)
    assert first.wait(timeout=180) == 0, consume_runner.logs()
    assert _snapshots(db_url) >= 1, consume_runner.logs()  # its exit waits for the compaction
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(feature_snapshot_chunks).values(data=b"not a snapshot"))
    finally:
        engine.dispose()
    # The restart finds the snapshot unreadable, replays the stored history, decides the rest.
    produce(kafka_bootstrap, topic, keyed(payments[800:]))
    assert consume_runner.run(*ARGS, "--idle-exit", "4") == 0, consume_runner.logs()
    logs = consume_runner.logs(tail=None)
    assert "feature snapshot not used (snapshot" in logs, consume_runner.logs()  # not "none stored"
    assert len(db_rows(db_url)["decisions"]) == len(payments), consume_runner.logs()
    _assert_stored_once_as_uninterrupted(db_url, small_model, payments)


def test_a_rebalance_restores_the_topic_snapshot_for_the_new_partitions(
    consume_runner, kafka_bootstrap, topic, db_url, small_world
):
    """3 partitions, 2 consumers, snapshots every 0.3 s; one is killed once a snapshot is
    stored. The survivor, given partitions no snapshot was taken for alone, restores the
    topic's snapshot instead of replaying the history, and nothing is lost or twice."""
    consume_runner.env["PAYSCORE_SNAPSHOT_INTERVAL_SECONDS"] = "0.3"
    payments = payments_from(small_world, 10, 3000)
    produce(kafka_bootstrap, topic, keyed(payments))
    args = ("--batch-size", "50", "--max-wait-ms", "100")
    first = consume_runner.start(*args, "--idle-exit", "40")  # see test_consume's twin
    second = consume_runner.start(*args)
    stored = consume_runner.wait_until(
        first,
        lambda: _newest_snapshot(db_url) > 0 and len(db_rows(db_url)["decisions"]) > 300,
        120,
    )
    assert stored, consume_runner.logs()
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    assert first.wait(timeout=240) == 0, consume_runner.logs()
    rows = db_rows(db_url)
    assert sorted(tx for tx, *_ in rows["decisions"]) == sorted(p.transaction_id for p in payments)
    assert not rows["duplicates"] and not rows["dead_letters"]
    # The survivor's whole log (logs() keeps only the tail). It started on an empty database,
    # so every restore in it followed a rebalance that changed its partitions.
    survivor = (consume_runner.log_dir / "consume-0.log").read_text(errors="replace")
    assert "restored feature state from snapshot" in survivor, survivor[-6000:]
