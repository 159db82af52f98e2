"""Running totals and decision latency for the consumer's periodic summary line."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

# Latencies kept for percentiles: the most recent ones only, so memory stays bounded.
_LATENCY_WINDOW = 50_000


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
    ) -> None:
        self.batches += 1
        self.decided += decided
        self.duplicates += duplicates
        self.dead_letters += dead_letters
        self.labels += labels
        for status, n in by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        self._latencies.extend(committed_at - t for t in polled_at)

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
