"""Long time ranges answered from ``decision_rollup`` plus exact edges from the base table.

A range [start, end) is cut into whole hours (hour rollup rows), whole minutes at either end
(minute rollup rows) and the partial minutes at the very ends (read from
``scored_transactions``). Every decision falls in exactly one piece, so counts, rates, score
bins, activity buckets and fraud counts (by decision time) equal the plain GROUP BY over the
tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select

from payscore.dashboard.figures import TimeRange
from payscore.store.rollup import FRAUD_COLUMN, SCORE_COLUMNS, STATUS_COLUMNS, truncate
from payscore.store.schema import decision_rollup

ru = decision_rollup
MINUTE, HOUR = 60, 3600
# Ranges at least this long (and "all time") read the rollup; shorter ones the base table.
# At 10 million decisions over a week (about 60,000 an hour) "last hour" read from the table
# took four scans of 60,000 rows; from the rollup it is 60 minute rows and two partial minutes.
ROLLUP_MIN_SECONDS = 5 * 60


@dataclass(frozen=True)
class Plan:
    """Where each part of a range is read from; the parts are disjoint and cover the range."""

    hours: TimeRange | None  # bucket range of hour rows
    minutes: tuple[TimeRange, ...]  # bucket ranges of minute rows
    edges: tuple[TimeRange, ...]  # bounded scored_at ranges read from scored_transactions

    @property
    def uses_rollup(self) -> bool:
        return self.hours is not None or bool(self.minutes)


def use_rollup(tr: TimeRange) -> bool:
    """Whether a range is long enough for the rollup to pay off."""
    if tr.start is None or tr.end is None:
        return True
    return (tr.end - tr.start).total_seconds() >= ROLLUP_MIN_SECONDS


def _ceil(when: datetime, grain: int) -> datetime:
    floor = truncate(when, grain)
    return floor if floor == when else floor + timedelta(seconds=grain)


def plan(tr: TimeRange, coarsest: int = HOUR) -> Plan:
    """Cut ``tr`` into rollup pieces (hours only if ``coarsest`` allows) and base-table edges."""
    start, end = tr.start, tr.end
    a = None if start is None else _ceil(start, MINUTE)
    b = None if end is None else truncate(end, MINUTE)
    if a is not None and b is not None and a >= b:
        return Plan(None, (), (tr,))  # within one or two partial minutes: the table alone
    edges = []
    if start is not None and a is not None and start < a:
        edges.append(TimeRange(start, a))
    if end is not None and b is not None and b < end:
        edges.append(TimeRange(b, end))
    if coarsest < HOUR:
        return Plan(None, (TimeRange(a, b),), tuple(edges))
    big_a = None if a is None else _ceil(a, HOUR)
    big_b = None if b is None else truncate(b, HOUR)
    if big_a is not None and big_b is not None and big_a >= big_b:
        return Plan(None, (TimeRange(a, b),), tuple(edges))
    minutes = []
    if a is not None and big_a is not None and a < big_a:
        minutes.append(TimeRange(a, big_a))
    if b is not None and big_b is not None and big_b < b:
        minutes.append(TimeRange(big_b, b))
    return Plan(TimeRange(big_a, big_b), tuple(minutes), tuple(edges))


def rollup_where(p: Plan) -> ColumnElement[bool]:
    """The rollup rows of a plan, as ranges of the (grain, bucket) primary key."""
    parts: list[ColumnElement[bool]] = []
    if p.hours is not None:
        parts.append(and_(ru.c.grain == HOUR, *p.hours.clauses(ru.c.bucket)))
    for m in p.minutes:
        parts.append(and_(ru.c.grain == MINUTE, *m.clauses(ru.c.bucket)))
    return or_(*parts) if parts else false()


def in_ranges(column: Any, ranges: Sequence[TimeRange]) -> ColumnElement[bool]:
    """``column`` within any of the (bounded) ranges; one index range per range."""
    parts = [and_(*r.clauses(column)) for r in ranges]
    return or_(*parts) if parts else false()


def stmt_status_counts(p: Plan) -> Select:
    cols = [func.sum(ru.c[name]).label(name) for name in STATUS_COLUMNS.values()]
    return select(*cols).where(rollup_where(p))


def stmt_frauds(p: Plan) -> Select:
    """Fraud-labelled decisions of the plan's rollup rows, and how many of those rows are not
    counted yet (NULL: a database upgraded but not yet through ``payscore initdb``)."""
    frauds = ru.c[FRAUD_COLUMN]
    return select(func.sum(frauds), func.count() - func.count(frauds)).where(rollup_where(p))


def stmt_score_bins(p: Plan) -> Select:
    return select(*(func.sum(ru.c[name]).label(name) for name in SCORE_COLUMNS)).where(
        rollup_where(p)
    )


def stmt_buckets(p: Plan, bin_: ColumnElement[str]) -> Select:
    """The plan's rollup rows summed into chart bins by the database, oldest first. ``bin_``
    is the bin of ``bucket`` (``queries.bucket_expr``), a multiple of the rows' grain: a day's
    1,440 minute rows come back as 96 quarter-hour bins instead of being folded here."""
    bin_ = bin_.label("bin")
    sums = [func.sum(ru.c.decisions), *(func.sum(ru.c[n]) for n in STATUS_COLUMNS.values())]
    return select(bin_, *sums).where(rollup_where(p)).group_by(bin_).order_by(bin_)
