"""Stored payments with their counting labels, read as one time-ordered history for training.

The same rows, in the same order (event time, then insertion order), as the consumer's state
rebuild (``store/state.py``) replays; each payment carries the label that counts for it
(``fraud_labels``, the rule of ``store/labels.py``) and when that label became known. Read in
chunks from a server-side cursor, so a long history never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, inspect, null, select
from sqlalchemy.exc import SQLAlchemyError

from payscore.core.training import History
from payscore.store.engine import database_error
from payscore.store.schema import fraud_labels, scored_transactions

CHUNK_ROWS = 50_000
_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "amount", "event_time")
# Newer than the rest: a database no consumer or ``initdb`` has upgraded lacks it, and a
# read-only trainer cannot add it, so it is read as NULL there (the replay computes it).
_RATIO = "amount_ratio"


@dataclass(frozen=True)
class StoredSpan:
    """What the database holds: first and last event time (epoch seconds) and the count."""

    first_time: float
    last_time: float
    payments: int


def stored_span(db: Engine, since: float | None = None, until: float | None = None) -> StoredSpan:
    """The stored payments' span (all of them, or those in [since, until)); count 0 if none."""
    c = scored_transactions.c
    query = select(func.min(c.event_time), func.max(c.event_time), func.count())
    query = query.where(*_window(since, until))
    try:
        with db.connect() as conn:
            first, last, count = conn.execute(query).one()
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    if not count:
        return StoredSpan(0.0, 0.0, 0)
    return StoredSpan(_epoch(first), _epoch(last), int(count))


def iter_stored(
    db: Engine, since: float, until: float, chunk: int = CHUNK_ROWS
) -> Iterator[History]:
    """Stored payments with ``since <= event time < until`` (epoch seconds), oldest first,
    ``chunk`` at a time. A payment without a label counts as genuine from its event time plus
    the label delay (known_at NaN): the labels topic carries chargebacks, not confirmations."""
    c, f = scored_transactions.c, fraud_labels.c
    try:
        with db.connect() as conn:
            have = {col["name"] for col in inspect(conn).get_columns(scored_transactions.name)}
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    ratio = c[_RATIO] if _RATIO in have else null().label(_RATIO)
    query = (
        select(*(c[name] for name in _COLUMNS), ratio, f.is_fraud, f.known_at)
        .select_from(
            scored_transactions.outerjoin(fraud_labels, f.transaction_id == c.transaction_id)
        )
        .where(*_window(since, until))
        .order_by(c.event_time, c.id)
    )
    try:
        with db.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
            for rows in result.partitions(chunk):
                yield _chunk(rows)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def _chunk(rows: Sequence[Any]) -> History:
    n = len(rows)
    amounts = np.empty(n)
    times = np.empty(n)
    labels = np.zeros(n, dtype=np.int64)
    known_at = np.full(n, np.nan)
    ratios = np.full(n, np.nan)  # NaN: stored without one (computed by the replay)
    for i, (_, _, _, amount, at, ratio, fraud, known) in enumerate(rows):
        amounts[i] = float(amount)
        times[i] = _epoch(at)
        if ratio is not None:
            ratios[i] = float(ratio)
        if fraud is not None:
            labels[i] = int(bool(fraud))
            known_at[i] = _epoch(known)
    return History(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        amounts,
        times,
        labels,
        known_at,
        ratios,
    )


def _window(since: float | None, until: float | None) -> list[Any]:
    c = scored_transactions.c
    out = []
    if since is not None:
        out.append(c.event_time >= _naive(since))
    if until is not None:
        out.append(c.event_time < _naive(until))
    return out


def _naive(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=timezone.utc).timestamp()
