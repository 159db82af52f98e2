"""A consumer left without partitions: the group explains it, or the consumer re-joins."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from payscore.config import Settings
from payscore.stream.consumer import StreamConsumer
from tests.integration.conftest import db_rows, keyed, payments_from, produce, wait_until

pytestmark = pytest.mark.integration


def _stream_consumer(bootstrap: str, topic: str, group: str, kafka_consumer) -> StreamConsumer:
    settings = Settings(kafka_bootstrap_servers=bootstrap, input_topic=topic)
    pipeline = SimpleNamespace(group=group, labels_topic=None)
    consumer = StreamConsumer(settings, pipeline, None, lambda: None)  # type: ignore[arg-type]
    consumer._consumer = kafka_consumer
    return consumer


def test_the_real_group_description_tells_a_surplus_member_from_a_stuck_one(
    kafka_bootstrap, new_topic, group_id
):
    """Three members of a stable group on two partitions: the one without partitions is
    explained; a consumer whose group owns nothing is not.

    Each member polls on a thread of its own, as real consumers do: polled in turn from one
    thread, a member's poll can block in the group join while the others, not polled, miss
    the round, and the group may take minutes to settle."""
    from kafka import KafkaConsumer

    topic = new_topic(2)
    members = [
        KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group_id) for _ in range(3)
    ]
    lonely = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{group_id}-alone")
    stop = threading.Event()

    def keep_polling(m: KafkaConsumer) -> None:
        while not stop.is_set():
            m.poll(timeout_ms=100)

    pollers = [threading.Thread(target=keep_polling, args=(m,), daemon=True) for m in members]
    try:
        for t in pollers:
            t.start()

        def settled() -> bool:
            # all three joined: one partition each for two of them
            return sorted(len(m.assignment()) for m in members) == [0, 1, 1]

        # Generous: on a loaded machine one member may miss a join round and force another.
        assert wait_until(settled, 180), [len(m.assignment()) for m in members]
        # The members stay in the group on their heartbeat threads (the poll interval allows
        # minutes); stop polling so the surplus member is used from this thread alone.
        stop.set()
        for t in pollers:
            t.join(30)
        assert settled(), [len(m.assignment()) for m in members]
        surplus = [m for m in members if not m.assignment()]
        assert len(surplus) == 1
        lonely.topics()  # metadata, as the consumer fetches before subscribing
        member = _stream_consumer(kafka_bootstrap, topic, group_id, surplus[0])
        # The description is read while the group may still be completing its rebalance.
        assert wait_until(lambda: member._why_unassigned() is None, 60), member._why_unassigned()
        alone = _stream_consumer(kafka_bootstrap, topic, f"{group_id}-alone", lonely)
        why = alone._why_unassigned()
        assert why is not None and "0 of 2 partitions" in why
    finally:
        stop.set()
        for t in pollers:
            t.join(30)
        for m in [*members, lonely]:
            m.close()


def test_broker_restart_during_a_consumers_start_still_decides_everything(
    consume_runner, kafka_bootstrap, kafka_server, kafka_admin, topic, db_url, small_world
):
    """The broker goes away while a fresh consumer joins: it gets its partitions afterwards
    (re-joining if left unassigned) and every payment is decided once."""
    payments = payments_from(small_world, 30, 600)
    produce(kafka_bootstrap, topic, keyed(payments[:300]))
    proc = consume_runner.start("--batch-size", "50", "--max-wait-ms", "50")
    # Past its start-up checks (model, database, broker), now joining the group:
    assert wait_until(
        lambda: "consuming" in consume_runner.logs(tail=None),
        120,
        alive=proc,
        logs=consume_runner.logs,
    )
    kafka_server.stop()
    try:
        time.sleep(6)
        assert proc.poll() is None, consume_runner.logs()
    finally:
        kafka_server.start()
    produce(kafka_bootstrap, topic, keyed(payments[300:]))
    assert consume_runner.wait_until(
        proc, lambda: len(db_rows(db_url)["decisions"]) >= len(payments), 150
    ), consume_runner.logs()
    proc.terminate()
    assert proc.wait(timeout=60) == 0, consume_runner.logs()
    ids = [tx for tx, *_ in db_rows(db_url)["decisions"]]
    assert len(ids) == len(set(ids)) == len(payments)
    # The session's admin client reconnects lazily: let it, before the next test needs it.
    assert wait_until(lambda: _admin_ready(kafka_admin), 60)


def _admin_ready(admin) -> bool:
    try:
        admin.list_topics()
    except Exception:
        return False
    return True
