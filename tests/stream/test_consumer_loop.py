"""The consume loop's bookkeeping without a broker: writer thread order, abandonment, idle exit."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

from kafka import TopicPartition

from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.pipeline import PreparedBatch
from payscore.store.writer import WriteResult
from payscore.stream.batches import BatchWriterThread, InFlight
from payscore.stream.consumer import StreamConsumer
from payscore.stream.heap import freeze_after_full_collection, settle_heap


def _item(n: int) -> InFlight:
    return InFlight(PreparedBatch(size=n), [0.0] * n)


def test_batches_are_written_in_order_and_reported_once():
    written: list[int] = []
    writer = BatchWriterThread(
        lambda b: (written.append(b.size), WriteResult(decided=b.size))[1],
        lambda b: None,
        None,
        "dlq",
        lambda: False,
    )
    try:
        for n in range(1, 6):
            assert writer.submit(_item(n))
        assert writer.drain()
        assert written == [1, 2, 3, 4, 5]
        assert [i.batch.size for i in writer.completed()] == [1, 2, 3, 4, 5]
        assert writer.completed() == []
    finally:
        writer.close()


def test_stop_during_an_outage_abandons_the_batch_and_every_later_one():
    """A later batch must never be written after an earlier one was given up: its offsets
    would skip the lost batch's messages."""
    stop = threading.Event()
    attempts: list[int] = []
    released: list[int] = []

    def write(batch: PreparedBatch) -> WriteResult:
        attempts.append(batch.size)
        raise ServiceUnavailable("database unavailable")

    writer = BatchWriterThread(write, lambda b: released.append(b.size), None, "dlq", stop.is_set)
    try:
        assert writer.submit(_item(1))
        second = threading.Thread(target=writer.submit, args=(_item(2),))
        second.start()
        time.sleep(0.5)  # the first batch is being retried
        stop.set()
        second.join(10)
        assert not writer.drain()
        assert writer.abandoned and writer.error is None
        assert set(attempts) == {1}
        assert sorted(released) == [1, 2]
        assert writer.given_up == 3  # both batches' messages: read again after the stop
        assert writer.completed() == []
    finally:
        writer.close()


class _FakeKafka:
    def __init__(self, waiting: int | None = None) -> None:
        self.assigned: set[TopicPartition] = set()
        self.waiting = waiting  # messages past each assigned partition's position
        self.subscribed: list[list[str]] = []
        self.unsubscribed = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        time.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.waiting is None:
            raise RuntimeError("no broker")
        return {tp: self.waiting for tp in partitions}

    def position(self, tp: TopicPartition) -> int:
        return 0

    def unsubscribe(self) -> None:
        self.unsubscribed += 1

    def subscribe(self, topics: list[str], listener: object) -> None:
        self.subscribed.append(list(topics))


def _loop_consumer(fake: _FakeKafka, **kwargs: float) -> StreamConsumer:
    settings = Settings(max_wait_ms=20, log_interval_seconds=3600)
    pipeline = SimpleNamespace(group="g", labels_topic=None)
    consumer = StreamConsumer(settings, pipeline, None, lambda: None, **kwargs)  # type: ignore[arg-type]
    consumer._consumer = fake
    consumer._writer = BatchWriterThread(
        lambda b: WriteResult(), lambda b: None, None, "dlq", lambda: False
    )
    return consumer


@contextmanager
def _looping(consumer: StreamConsumer) -> Iterator[threading.Thread]:
    """``consumer._loop`` running on a thread; stopped and its writer closed on the way out."""
    loop = threading.Thread(target=consumer._loop, daemon=True)
    loop.start()
    try:
        yield loop
    finally:
        consumer.request_stop()
        loop.join(5)
        assert consumer._writer is not None
        consumer._writer.close()


def test_a_stalled_assignment_rejoins_the_group_once_per_interval():
    """Owned partitions, messages waiting, nothing polled: leave and re-join (kafka-python 3.0
    was seen stuck like that after a rebalance). An idle stream (no lag) never re-joins."""
    fake = _FakeKafka(waiting=7)
    fake.assigned = {TopicPartition("payments", 0)}
    consumer = _loop_consumer(fake)
    consumer.stall_s = 0.3
    consumer._topics = ["payments"]
    with _looping(consumer):
        time.sleep(1.0)
        assert fake.unsubscribed >= 1 and fake.subscribed[0] == ["payments"]
        assert fake.unsubscribed <= 3  # at most once per stall_s
        fake.waiting = 0
        seen = fake.unsubscribed
        time.sleep(1.0)
        assert fake.unsubscribed == seen


def test_a_consumer_left_without_partitions_rejoins_unless_the_group_explains_it():
    """No assignment for longer than a group takes to settle: re-join, once per interval,
    unless the group is stable and other members own every partition."""
    fake = _FakeKafka()
    consumer = _loop_consumer(fake)
    consumer.unassigned_s = 0.3
    consumer._topics = ["payments"]
    verdicts: list[str | None] = ["group state PreparingRebalance, 0 of 3 partitions owned"]
    consumer._why_unassigned = lambda: verdicts[-1]  # type: ignore[method-assign]
    with _looping(consumer):
        time.sleep(1.2)
        assert 1 <= fake.unsubscribed <= 4 and fake.subscribed[0] == ["payments"]
        verdicts.append(None)  # now the other members own everything: stay idle
        seen = fake.unsubscribed
        time.sleep(1.0)
        assert fake.unsubscribed == seen


def test_idle_exit_counts_only_while_partitions_are_assigned():
    fake = _FakeKafka()
    consumer = _loop_consumer(fake, idle_exit_s=0.3)
    with _looping(consumer) as loop:
        loop.join(1.5)
        assert loop.is_alive()  # waiting for an assignment is not idleness
        fake.assigned = {TopicPartition("t", 0)}
        loop.join(10)
        assert not loop.is_alive()  # idle while assigned: exits


class _Coordinator:
    """kafka-python's group coordinator as ``group_settled`` reads it."""

    def __init__(self) -> None:
        self.rejoining = True

    def stable(self) -> bool:
        return not self.rejoining

    def need_rejoin(self) -> bool:
        return self.rejoining


def test_idle_exit_does_not_count_a_rebalance_under_way():
    """Partitions owned but the group rebalancing (seen taking longer than a 4 s --idle-exit
    at start-up under load, with messages waiting): not idle; once settled, idle again."""
    fake = _FakeKafka()
    fake.assigned = {TopicPartition("t", 0)}
    fake._coordinator = _Coordinator()  # type: ignore[attr-defined]
    consumer = _loop_consumer(fake, idle_exit_s=0.3)
    with _looping(consumer) as loop:
        loop.join(1.5)
        assert loop.is_alive()  # five idle limits into the rebalance: still waiting
        fake._coordinator.rejoining = False  # type: ignore[attr-defined]
        loop.join(10)
        assert not loop.is_alive()


def test_a_rebalance_that_never_settles_still_meets_the_stall_check():
    """The idle clock stops during a rebalance, the stall clock does not: messages waiting
    and a group that never settles end in a re-join, not in an endless wait."""
    fake = _FakeKafka(waiting=5)
    fake.assigned = {TopicPartition("t", 0)}
    fake._coordinator = _Coordinator()  # type: ignore[attr-defined]
    consumer = _loop_consumer(fake, idle_exit_s=60)
    consumer.stall_s = 0.3
    consumer._topics = ["t"]
    with _looping(consumer):
        time.sleep(1.0)
        assert fake.unsubscribed >= 1


def test_idle_exit_does_not_count_the_state_rebuild_after_an_assignment():
    """A rebuild longer than --idle-exit must not end the consumer before it decides anything:
    the idle time starts when the partitions are positioned, not when they were assigned."""
    fake = _FakeKafka()
    fake.assigned = {TopicPartition("t", 0)}
    consumer = _loop_consumer(fake, idle_exit_s=0.3)
    positioned: list[float] = []

    def slow_catch_up() -> bool:
        time.sleep(1.0)  # a rebuild three times the idle limit
        consumer._pending.clear()
        positioned.append(time.monotonic())
        return True

    consumer._catch_up = slow_catch_up  # type: ignore[method-assign]
    consumer._pending = {TopicPartition("t", 0)}
    with _looping(consumer) as loop:
        loop.join(30)
        exited = time.monotonic()
        assert not loop.is_alive()  # idle after positioning: exits
        assert positioned, "the loop never positioned its partitions"
        # Idle time counted from the end of the rebuild: at least the whole limit after it.
        assert exited - positioned[0] >= 0.3


class _Future:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def succeeded(self) -> bool:
        return self.ok


class _Producer:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes) -> _Future:
        self.sent.append(value)
        return _Future(self.ok)

    def flush(self, timeout: float) -> None:
        return None

    def close(self, timeout: float) -> None:
        self.closed = True


def test_unacknowledged_decisions_are_resent_on_a_new_producer_before_the_write():
    stuck, fresh = _Producer(ok=False), _Producer(ok=True)
    order: list[str] = []

    def write(batch: PreparedBatch) -> WriteResult:
        order.append(f"write after {len(fresh.sent)} resent")
        return WriteResult(decided=batch.size)

    writer = BatchWriterThread(
        write, lambda b: None, stuck, "dlq", lambda: False, new_producer=lambda: fresh
    )
    try:
        item = _item(2)
        item.sent = [(stuck.send("d", b"k", v), "d", b"k", v) for v in (b"a", b"b")]
        assert writer.submit(item) and writer.drain()
        assert stuck.closed and writer.producer is fresh
        assert fresh.sent == [b"a", b"b"]
        assert order == ["write after 2 resent"]
    finally:
        writer.close()


def test_survivors_of_a_full_collection_are_frozen_and_young_collections_freeze_nothing():
    gc.callbacks.append(freeze_after_full_collection)
    try:
        gc.collect()
        kept = [[i] for i in range(2_000)]  # new long-lived state, like new customers
        frozen = gc.get_freeze_count()
        gc.collect(1)
        assert gc.get_freeze_count() == frozen  # not after a young collection
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert not any(o is kept for o in gc.get_objects(generation=2))
    finally:
        gc.callbacks.remove(freeze_after_full_collection)
        gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_settle_heap_frees_cycles_that_became_garbage_while_frozen():
    node = _Node()
    ref = weakref.ref(node)
    gc.freeze()
    del node
    try:
        gc.collect()
        assert ref() is not None  # frozen: the collector does not look at it
        settle_heap()
        assert ref() is None
        assert gc.get_freeze_count() > 0  # what is alive is frozen again
    finally:
        gc.unfreeze()


class _DlqProducer:
    """Refuses records above ``limit`` bytes as the broker does, or fails with ``error``."""

    def __init__(self, limit: int = 10**9, error: Exception | None = None) -> None:
        self.limit, self.error = limit, error
        self.sizes: list[int] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: list) -> _Future:
        from kafka.errors import MessageSizeTooLargeError

        if self.error is not None:
            raise self.error
        size = len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
        if size > self.limit:
            raise MessageSizeTooLargeError(f"{size} bytes")
        self.sizes.append(size)
        return _DoneFuture()

    def flush(self, timeout: float) -> None:
        return None


class _DoneFuture:
    def get(self, timeout: float) -> None:
        return None


def _rejected_item(value: bytes) -> InFlight:
    from payscore.pipeline import Rejected

    record = SimpleNamespace(
        key=b"k", value=value, headers=[], topic="payments", partition=0, offset=7
    )
    batch = PreparedBatch(size=1)
    batch.rejected.append(Rejected(record, "too_large", None, "too large", None))  # type: ignore[arg-type]
    return InFlight(batch, [0.0])


def test_dead_letters_refused_as_too_large_are_cut_until_the_topic_takes_them():
    """A dead-letter topic with a small max.message.bytes: cut dead letters further, go on."""
    producer = _DlqProducer(limit=200_000)
    written: list[int] = []
    writer = BatchWriterThread(
        lambda b: (written.append(b.size), WriteResult(decided=0))[1],
        lambda b: None,
        producer,
        "dlq",
        lambda: False,
    )
    try:
        assert writer.submit(_rejected_item(b"x" * 900_000)) and writer.drain()
        assert written == [1] and len(producer.sizes) == 1 and producer.sizes[0] <= 200_000
        assert writer.dlq_max_bytes < 200_000 and writer.error is None
    finally:
        writer.close()


def test_dead_letters_that_cannot_be_published_stop_the_consumer_after_bounded_attempts(
    monkeypatch,
):
    """Not authorized on the dead-letter topic: retried a bounded number of times, then a
    clean error (exit code 3); the batch is given up, so it is read again after the fix."""
    from kafka.errors import TopicAuthorizationFailedError

    from payscore.stream import batches

    monkeypatch.setattr(batches, "DLQ_MAX_ATTEMPTS", 3)
    producer = _DlqProducer(error=TopicAuthorizationFailedError("payments.dlq"))
    writer = BatchWriterThread(
        lambda b: WriteResult(), lambda b: None, producer, "dlq", lambda: False
    )
    try:
        writer.submit(_rejected_item(b"{}"))
        assert not writer.drain()
        assert isinstance(writer.error, batches.DeadLettersUnpublishable)
        assert writer.error.exit_code == 3 and "after 3 attempts" in str(writer.error)
        assert writer.given_up == 1
    finally:
        writer.close()


def test_a_timeout_is_an_outage_unless_the_dead_letter_topic_is_gone(monkeypatch):
    from kafka.errors import KafkaTimeoutError

    from payscore.stream import batches

    monkeypatch.setattr(batches, "DLQ_MAX_ATTEMPTS", 2)
    exists: list[bool | None] = [None]
    producer = _DlqProducer(error=KafkaTimeoutError("Failed to update metadata"))
    writer = BatchWriterThread(
        lambda b: WriteResult(),
        lambda b: None,
        producer,
        "dlq",
        lambda: False,
        dlq_topic_exists=lambda: exists[-1],
    )
    try:
        writer.submit(_rejected_item(b"{}"))
        time.sleep(1.0)  # broker unreachable (None): retried, never given up
        assert writer.busy() and writer.error is None
        exists.append(False)  # the topic was deleted: bounded like any other failure
        assert not writer.drain()
        assert isinstance(writer.error, batches.DeadLettersUnpublishable)
    finally:
        writer.close()


def test_a_deleted_dead_letter_topic_is_created_again_when_allowed():
    from kafka.errors import KafkaTimeoutError

    producer = _DlqProducer(error=KafkaTimeoutError("Failed to update metadata"))
    created: list[str] = []

    def create() -> None:
        created.append("dlq")
        producer.error = None  # the topic exists again: the next send goes through

    writer = BatchWriterThread(
        lambda b: WriteResult(),
        lambda b: None,
        producer,
        "dlq",
        lambda: False,
        dlq_topic_exists=lambda: bool(created),
        create_dlq_topic=create,
    )
    try:
        assert writer.submit(_rejected_item(b"{}")) and writer.drain()
        assert created == ["dlq"] and len(producer.sizes) == 1 and writer.error is None
    finally:
        writer.close()
