"""Plain values the dashboard queries return and the page shows; no I/O here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

STATUSES = ("APPROVED", "REVIEW", "DECLINED")

# The one status palette of every table and chart, from Okabe and Ito's colour-blind-safe set:
# blue, orange and vermillion stay apart under protanopia, deuteranopia and tritanopia. Charts
# add a shape per status and tables show the status as text, so colour never carries it alone.
STATUS_COLOURS = {"APPROVED": "#0072B2", "REVIEW": "#E69F00", "DECLINED": "#D55E00"}
STATUS_SHAPES = {"APPROVED": "circle", "REVIEW": "square", "DECLINED": "triangle-up"}
# Tables mark a status with a glyph of the chart's shape, coloured near the palette's colour
# (blue circle, orange square, vermillion triangle): readable without telling colours apart,
# and far cheaper to draw than a styled table (pandas Styler took 62 % of a customer lookup).
STATUS_MARKS = {"APPROVED": "\U0001f535", "REVIEW": "\U0001f7e7", "DECLINED": "\U0001f53a"}
# The activity chart's series: all payments in neutral grey, then the two statuses that matter.
SERIES_COLOURS = {
    "payments": "#555555",
    "review": STATUS_COLOURS["REVIEW"],
    "declined": STATUS_COLOURS["DECLINED"],
}
SERIES_SHAPES = {
    "payments": "circle",
    "review": STATUS_SHAPES["REVIEW"],
    "declined": STATUS_SHAPES["DECLINED"],
}


def tint(colour: str, alpha: float) -> str:
    """``#RRGGBB`` as a CSS ``rgba()`` with ``alpha``: a table cell's background in the palette."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


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
    active_seconds: float  # from the first to the last decision of the range
    latency_median_ms: float | None
    latency_p99_ms: float | None
    latency_sample: int = 0

    def rate(self, status: str) -> float | None:
        return self.counts.get(status, 0) / self.decided if self.decided else None

    @property
    def fraud_rate(self) -> float | None:
        return self.fraud_labelled / self.decided if self.decided else None

    @property
    def throughput_per_second(self) -> float | None:
        """Decisions per second over the active period, not over the whole range: a demo that
        decides 20,000 payments in 6 s must not read as 333 a minute under "last hour".
        None until two decisions lie apart in time."""
        if self.decided < 2 or self.active_seconds <= 0:
            return None
        return self.decided / self.active_seconds


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


# Chart bins: each divides the next larger unit, so minute and hour rollup rows fold into them.
BIN_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400)  # fmt: skip
MAX_BINS = 120  # a line a few pixels per point across half the page
MIN_BINS = 10  # enough points for a shape
MIN_PER_BIN = 10  # fewer, and the line is counting noise
# Bins under a minute only when minutes would draw fewer than this many: a longer span reads its
# minutes from the rollup instead of scanning every decision (an hour at 30 s read ~1M rows).
MIN_MINUTE_BINS = 30
_EPOCH = datetime(1970, 1, 1)
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def floor_time(when: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long bin holding ``when`` (bins counted from the epoch, so
    days start at midnight UTC)."""
    step = timedelta(seconds=seconds)
    return _EPOCH + (when - _EPOCH) // step * step


def choose_bin(first: datetime | None, last: datetime | None, decisions: int) -> int:
    """The chart bin for ``decisions`` spread from ``first`` to ``last``: the data decides, not
    the range, so a burst inside one minute still draws a line.

    The finest bin with at most MAX_BINS bins, at least MIN_BINS of them and MIN_PER_BIN
    decisions in each on average; when the decisions are too few for both, the coarsest that
    still gives MIN_BINS bins; when they are too close for that, the finest. Bins under a
    minute only for a span that minutes cut into fewer than MIN_MINUTE_BINS.
    """
    if first is None or last is None:
        return 60

    def bins(seconds: int) -> int:
        span = floor_time(last, seconds) - floor_time(first, seconds)
        return int(span.total_seconds()) // seconds + 1

    finest = 1 if bins(60) < MIN_MINUTE_BINS else 60
    fitting = [s for s in BIN_SECONDS if finest <= s and bins(s) <= MAX_BINS] or [BIN_SECONDS[-1]]
    for seconds in fitting:
        if bins(seconds) >= MIN_BINS and decisions / bins(seconds) >= MIN_PER_BIN:
            return seconds
    enough = [s for s in fitting if bins(s) >= MIN_BINS]
    return enough[-1] if enough else fitting[0]


def bin_name(seconds: int) -> str:
    """ "second", "10 seconds", "minute", "5 minutes", "6 hours", "day"."""
    for size, unit in _UNITS:
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    raise ValueError(seconds)


def time_axis_format(seconds: int, span_seconds: float) -> str:
    """A 24-hour UTC format for a chart's time axis with bins of ``seconds``."""
    if seconds >= 86400:
        return "%Y-%m-%d"
    if span_seconds > 86400:
        return "%m-%d %H:%M"
    return "%H:%M:%S" if seconds < 60 else "%H:%M"
