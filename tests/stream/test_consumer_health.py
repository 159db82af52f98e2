"""The consumer's hooks for /readyz, /healthz and the lag gauge, without a broker."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from kafka import TopicPartition

from tests.stream.test_consumer_loop import _FakeKafka, _loop_consumer


class _SeekingKafka(_FakeKafka):
    def __init__(self, waiting: int | None = None) -> None:
        super().__init__(waiting)
        self.seeks: dict[TopicPartition, int | None] = {}

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def resume(self, *tps: TopicPartition) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks[tp] = None


def test_ready_only_between_positioning_and_the_next_rebalance() -> None:
    fake = _SeekingKafka()
    consumer = _loop_consumer(fake)
    engine = object()
    consumer.pipeline.writer = SimpleNamespace(read_offsets=lambda group, topic: {0: 42})
    consumer.pipeline.scorer = SimpleNamespace(engine=None)
    state = SimpleNamespace(rebuild=lambda: engine, rebuilt_rows=7)
    consumer._state = state  # type: ignore[assignment]
    tps = {TopicPartition("payments", 0), TopicPartition("payments", 1)}
    try:
        assert not consumer.stats.ready
        fake.assigned = set(tps)
        consumer._on_assigned(tps)
        assert not consumer.stats.ready  # assigned, not yet positioned
        assert consumer._catch_up()
        assert consumer.stats.ready
        assert consumer.pipeline.scorer.engine is engine
        p0, p1 = TopicPartition("payments", 0), TopicPartition("payments", 1)
        assert fake.seeks == {p0: 42, p1: None}  # stored offset; never written: the beginning
        assert consumer.stats.rebuilds == 1
        assert consumer.stats.rebuild_rows == consumer.stats.rebuild_rows_total == 7
        consumer._on_revoked(tps)
        assert not consumer.stats.ready
    finally:
        assert consumer._writer is not None
        consumer._writer.close()


def test_lag_is_kept_per_partition_for_the_gauge() -> None:
    fake = _FakeKafka(waiting=7)
    fake.assigned = {TopicPartition("payments", 0), TopicPartition("payments", 2)}
    consumer = _loop_consumer(fake)
    try:
        assert consumer._lag() == 14
        assert consumer.stats.lag == {("payments", 0): 7, ("payments", 2): 7}
        fake.assigned = set()
        assert consumer._lag() == 0
        assert consumer.stats.lag == {}
    finally:
        assert consumer._writer is not None
        consumer._writer.close()


def test_the_loop_marks_each_turn_for_liveness() -> None:
    fake = _FakeKafka()
    consumer = _loop_consumer(fake)
    before = consumer.stats.last_loop
    loop = threading.Thread(target=consumer._loop, daemon=True)
    try:
        loop.start()
        deadline = time.monotonic() + 10
        while consumer.stats.last_loop == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumer.stats.last_loop > before
    finally:
        consumer.request_stop()
        loop.join(5)
        assert consumer._writer is not None
        consumer._writer.close()
