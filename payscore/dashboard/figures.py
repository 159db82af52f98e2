"""Plain values the dashboard queries return and the page shows; no I/O here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

STATUSES = ("APPROVED", "REVIEW", "DECLINED")


def utc_now() -> datetime:
    """Now as a naive UTC datetime, the form every stored time has."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class TimeRange:
    """A half-open range [start, end) of decision times; ``start=None`` means all time."""

    start: datetime | None
    end: datetime | None

    @classmethod
    def last(cls, seconds: int | None, now: datetime | None = None) -> TimeRange:
        if seconds is None:
            return cls(None, None)
        end = now or utc_now()
        return cls(end - timedelta(seconds=seconds), end)

    def clauses(self, column: Any) -> list[Any]:
        """SQL conditions on a datetime column (works for any table with such a column)."""
        out = []
        if self.start is not None:
            out.append(column >= self.start)
        if self.end is not None:
            out.append(column < self.end)
        return out


@dataclass(frozen=True)
class Headline:
    """The figures at the top of the page."""

    decided: int
    counts: dict[str, int]
    fraud_labelled: int
    dead_letters: int
    throughput_per_minute: float
    latency_median_ms: float | None
    latency_p99_ms: float | None
    latency_sample: int = 0

    def rate(self, status: str) -> float | None:
        return self.counts.get(status, 0) / self.decided if self.decided else None

    @property
    def fraud_rate(self) -> float | None:
        return self.fraud_labelled / self.decided if self.decided else None


@dataclass(frozen=True)
class CustomerProfile:
    """One customer's history and how recent activity compares with their usual behaviour."""

    customer_id: str
    payments: int
    mean_amount: float
    std_amount: float
    first_event: datetime
    last_event: datetime
    usual_per_day: float
    last_hour: int
    last_day: int
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def choose_bucket(start: datetime | None, end: datetime | None) -> int:
    """Minutes for up to six hours, hours up to ten days, days beyond."""
    if start is None or end is None:
        return 86400 if start is None and end is None else 3600
    span = (end - start).total_seconds()
    if span <= 6 * 3600:
        return 60
    return 3600 if span <= 10 * 86400 else 86400
