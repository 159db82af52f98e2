"""Timing the real pipeline from outside: first prepare, last commit, send-to-commit latency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float] | None:
    if not seconds:
        return None
    p50, p95, p99 = np.percentile(np.asarray(seconds, dtype=float) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


class Probe:
    """Times the pipeline: first prepare, last commit, per-payment send-to-commit latency.

    Latency uses each record's Kafka timestamp (CreateTime, set by the producer at send) and
    the wall clock right after the batch's database commit; only records sent at or after
    ``since_ms`` count (so warm-up messages are left out). ``sent_ms`` holds each counted
    record's send time, in the order of ``latencies``.
    """

    def __init__(self, pipeline: Any, since_ms: float | None = None) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.decided = 0
        self.latencies: list[float] = []
        self.sent_ms: list[float] = []
        self.since_ms = since_ms
        self.prepare_s = 0.0  # parse, duplicate check, features, model, rules
        self.write_s = 0.0  # the database transaction
        # The process's CPU time (every thread) from the first prepare to the last commit: the
        # same window as ``rate``, so start-up and a wait for partitions are left out.
        self.cpu_first: float | None = None
        self.cpu_last: float | None = None
        self._sent_ms: dict[tuple[str, int, int], float] = {}
        prepare, write = pipeline.prepare, pipeline.write

        def timed_prepare(messages: Any, *args: Any, **kwargs: Any) -> Any:
            if self.first is None:
                self.first, self.cpu_first = time.perf_counter(), time.process_time()
            if self.since_ms is not None:
                for m in messages:
                    self._sent_ms[(m.topic, m.partition, m.offset)] = m.timestamp
            started = time.perf_counter()
            try:
                return prepare(messages, *args, **kwargs)
            finally:
                self.prepare_s += time.perf_counter() - started

        def timed_write(batch: Any) -> Any:
            started = time.perf_counter()
            result = write(batch)
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.write_s += self.last - started
            wall_ms = time.time() * 1000
            self.decided += len(batch.decided)
            if self.since_ms is not None:
                for row in batch.rows:
                    key = (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])
                    sent = self._sent_ms.pop(key, None)
                    if sent is not None and sent >= self.since_ms:
                        self.latencies.append((wall_ms - sent) / 1000)
                        self.sent_ms.append(sent)
            return result

        pipeline.prepare, pipeline.write = timed_prepare, timed_write

    def latencies_after(self, skip: int) -> list[float]:
        """The latencies of all but the ``skip`` earliest-sent records."""
        order = sorted(range(len(self.latencies)), key=self.sent_ms.__getitem__)
        return [self.latencies[i] for i in order[skip:]]

    @property
    def cpu_s(self) -> float:
        if self.cpu_first is None or self.cpu_last is None:
            return 0.0
        return self.cpu_last - self.cpu_first

    @property
    def rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.decided / (self.last - self.first)
