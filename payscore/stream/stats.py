"""Running totals and latencies of the consumer: its summary line and its Prometheus metrics.

Plain numbers, updated once per batch; ``stream/metrics.py`` reads them when scraped.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# Latencies kept for percentiles: the most recent ones only, so memory stays bounded.
_LATENCY_WINDOW = 50_000
#: Histogram bucket upper bounds, in seconds (latencies) and payments (batch size).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Send to commit also holds the time a payment waited in Kafka: a backlog is minutes long.
SEND_TO_COMMIT_BUCKETS_S = (*LATENCY_BUCKETS_S, 60.0, 300.0, 1800.0)
#: Kafka's ``timestamp_type`` of a record stamped by its producer (1 is the broker's append).
CREATE_TIME = 0


class Buckets:
    """A cumulative histogram kept as plain counts, filled a batch at a time with numpy
    (prometheus-client's Histogram takes one value a call: one call a payment)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # the last one: above all
        self.total = 0.0

    def observe(self, values: Iterable[float] | np.ndarray) -> None:
        arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
        if arr.size == 0:
            return
        # side="left": a value equal to a bound falls in that bound's bucket (le is inclusive).
        index = np.searchsorted(self.bounds, arr, side="left")
        self.counts += np.bincount(index, minlength=len(self.counts))
        self.total += float(arr.sum())

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count of values at or below it) pairs, ending with infinity."""
        running = np.cumsum(self.counts)
        les = [*(float(b) for b in self.bounds), float("inf")]
        return list(zip(les, (int(n) for n in running), strict=True))


class ConsumerStats:
    """Totals since start plus a rolling window of decision latencies (seconds).

    Decision latency = from the moment a message was returned by ``poll()`` to the moment its
    batch (decision and offset) was committed to the database.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.decided = 0
        self.by_status: dict[str, int] = {}
        self.duplicates = 0
        self.dead_letters = 0
        self.labels = 0
        self.batches = 0
        self.dead_by_kind: dict[str, int] = {}
        self.batch_size = Buckets(BATCH_BUCKETS)
        self.prepare_s = Buckets(LATENCY_BUCKETS_S)
        self.write_s = Buckets(LATENCY_BUCKETS_S)  # filled by the writer thread only
        self.commit_latency_s = Buckets(LATENCY_BUCKETS_S)  # poll to database commit
        self.send_to_commit_s = Buckets(SEND_TO_COMMIT_BUCKETS_S)  # writer thread only
        self.track_send_to_commit = False  # only metrics read it: set by their collector
        self.rebuilds = 0
        self.rebuild_s = 0.0  # the last rebuild's duration
        self.rebuild_seconds_total = 0.0
        self.rebuild_rows = 0  # stored payments the last rebuild replayed
        self.rebuild_rows_total = 0
        self.retries: dict[str, int] = {}  # failed attempts by operation (stream/batches.retry)
        self.lag: dict[tuple[str, int], int] = {}  # (topic, partition) -> messages behind
        # For /healthz and /readyz: the last turn of the poll loop, and whether the assigned
        # partitions are positioned and the feature state rebuilt.
        self.last_loop = self.started
        self.ready = False
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._last_report = self.started
        self._decided_at_last_report = 0

    def record_batch(
        self,
        decided: int,
        by_status: Mapping[str, int],
        duplicates: int,
        dead_letters: int,
        polled_at: Iterable[float],
        committed_at: float,
        labels: int = 0,
        dead_kinds: Iterable[str] = (),
    ) -> None:
        self.batches += 1
        self.decided += decided
        self.duplicates += duplicates
        self.dead_letters += dead_letters
        self.labels += labels
        for status, n in by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        for kind in dead_kinds:
            self.dead_by_kind[kind] = self.dead_by_kind.get(kind, 0) + 1
        latencies = committed_at - np.fromiter(polled_at, float)
        self._latencies.extend(latencies.tolist())
        self.commit_latency_s.observe(latencies)
        self.batch_size.observe([latencies.size])

    def record_rebuild(self, seconds: float, rows: int = 0) -> None:
        self.rebuilds += 1
        self.rebuild_s = seconds
        self.rebuild_seconds_total += seconds
        self.rebuild_rows = rows
        self.rebuild_rows_total += rows

    def latency_percentiles(self) -> tuple[float, float, float] | None:
        """p50, p95, p99 in milliseconds over the recent window, None before any batch."""
        if not self._latencies:
            return None
        p50, p95, p99 = np.percentile(np.fromiter(self._latencies, float), [50, 95, 99])
        return float(p50) * 1000, float(p95) * 1000, float(p99) * 1000

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self._last_report >= interval_s

    def summary(self, lag: int | None) -> str:
        """One log line; resets the interval throughput counter."""
        now = time.monotonic()
        elapsed = max(now - self._last_report, 1e-9)
        rate = (self.decided - self._decided_at_last_report) / elapsed
        self._last_report, self._decided_at_last_report = now, self.decided
        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.by_status.items())) or "-"
        lat = self.latency_percentiles()
        latency = (
            "p50/p95/p99 -" if lat is None else "p50/p95/p99 {:.0f}/{:.0f}/{:.0f} ms".format(*lat)
        )
        return (
            f"decided={self.decided} ({statuses}) duplicates={self.duplicates} "
            f"dead_letters={self.dead_letters} labels={self.labels} rate={rate:.0f}/s "
            f"lag={'?' if lag is None else lag} latency {latency}"
        )

    def overall_rate(self) -> float:
        return self.decided / max(time.monotonic() - self.started, 1e-9)


def created_to_commit_s(
    records: Iterable[Any],
    rows: Sequence[Mapping[str, Any]],
    not_decided: Collection[str],
    committed_at: float,
) -> np.ndarray:
    """Seconds from each decided payment's Kafka CreateTime to its database commit.

    ``rows`` are the batch's decision rows, ``not_decided`` the transaction ids the writer
    turned into duplicates (``WriteResult.duplicate_ids``: a repeat within the batch is its
    later row), ``committed_at`` the commit's wall-clock time. Records stamped by the broker
    (LogAppendTime) or not at all are skipped; a producer clock ahead of ours would give a
    negative latency, counted as zero.
    """
    created = {
        (r.topic, r.partition, r.offset): r.timestamp
        for r in records
        if r.timestamp_type == CREATE_TIME and r.timestamp is not None and r.timestamp >= 0
    }
    if not_decided:  # rare; the writer keeps a repeated id's first row, so drop from the end
        undecided = Counter(not_decided)
        kept = []
        for row in reversed(rows):
            if undecided[row["transaction_id"]] > 0:
                undecided[row["transaction_id"]] -= 1
            else:
                kept.append(row)
        rows = kept
    stamps = [
        created.get((row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]))
        for row in rows
    ]
    created_s = np.fromiter((t for t in stamps if t is not None), float) / 1000.0
    return np.maximum(committed_at - created_s, 0.0)
