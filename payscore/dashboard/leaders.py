"""The riskiest customers/terminals of a long range without ranking every flagged decision.

The page ranks keys by declines, then reviews, then top score. At 10 million decisions a week's
REVIEW and DECLINED rows are about 620,000 index entries (1.4 s on a loaded machine only to
count them); the declines alone are about 150,000. The leaders by declines bound who can rank:
only their rows are then aggregated in full (see ``queries.riskiest``).
"""

from __future__ import annotations

from sqlalchemy import Connection, Select, func, select

from payscore.dashboard.figures import TimeRange
from payscore.store.schema import scored_transactions

st = scored_transactions
MAX_CANDIDATES = 500  # more tied leaders than this: the whole range is ranked instead


def stmt_declined_leaders(column: str, tr: TimeRange, limit: int) -> Select:
    """The ``limit`` keys with most DECLINED decisions in the range, most first."""
    key = st.c[column]
    return (
        select(key, func.count().label("n"))
        .where(st.c.status == "DECLINED", *tr.clauses(st.c.scored_at))
        .group_by(key)
        .order_by(func.count().desc())
        .limit(limit)
    )


def stmt_declined_at_least(column: str, tr: TimeRange, floor: int) -> Select:
    key = st.c[column]
    return (
        select(key)
        .where(st.c.status == "DECLINED", *tr.clauses(st.c.scored_at))
        .group_by(key)
        .having(func.count() >= floor)
    )


def riskiest_candidates(
    conn: Connection, column: str, tr: TimeRange, limit: int
) -> list[str] | None:
    """Every key that can be among the ``limit`` riskiest, found from the DECLINED rows alone,
    or None when the whole range must be ranked.

    The ranking sorts by declines first, so when at least ``limit`` keys have a decline, each
    of the top ``limit`` has at least as many declines as the ``limit``-th most declined key
    (ties broken by reviews and score are all kept as candidates). Their REVIEW rows are then
    read through ix_scored_*_flagged instead of every REVIEW row of the range (at 10 million
    decisions the range's 470,000 REVIEW rows were most of the query's time)."""
    if limit < 1:
        return None
    leaders = conn.execute(stmt_declined_leaders(column, tr, limit)).all()
    if len(leaders) < limit:
        return None  # fewer declined keys than places: reviews alone rank the rest
    floor = int(leaders[-1][1])
    keys = list(conn.execute(stmt_declined_at_least(column, tr, floor)).scalars())
    return keys if len(keys) <= MAX_CANDIDATES else None
