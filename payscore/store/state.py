"""Reads that rebuild the consumer's feature state from what the database already holds.

The database is the truth: every payment a consumer decided is in ``scored_transactions``
(in the same transaction as its offset), so replaying the recent history through a fresh
FeatureEngine reproduces the state an uninterrupted consumer would have. See docs/pipeline.md.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from payscore.core.features import Label
from payscore.store.engine import database_error
from payscore.store.schema import fraud_labels, label_events, scored_transactions

log = logging.getLogger(__name__)

#: How far back a rebuild reads: the longest customer window (30 days) plus, for terminals,
#: the label delay before their 30-day window.
HISTORY_DAYS = 30
_FETCH_ROWS = 20_000


@dataclass
class History:
    """Column-wise payments in replay order (event time, then insertion order)."""

    transaction_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    terminal_ids: list[str] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # epoch seconds
    partitions: list[int | None] = field(default_factory=list)
    # Each payment's stored amount ratio (``scored_transactions.amount_ratio``; None: a row
    # written before the column, or not by a consumer): ``FeatureEngine.transform_columns``.
    ratios: list[float | None] = field(default_factory=list)
    last_id: int = 0  # highest scored_transactions.id read

    def __len__(self) -> int:
        return len(self.transaction_ids)


def latest_event_time(db: Engine, topic: str | None) -> datetime | None:
    """The newest stored event time (naive UTC) for ``topic`` (all topics when None).

    Read from the newest end of the event-time index: ``MAX(event_time) ... WHERE kafka_topic
    = ?`` scans the whole table on MariaDB (no index has the topic first), which was 6.9 s of
    a 15 s restore at 5M stored payments.
    """
    c = scored_transactions.c
    query = select(c.event_time).order_by(c.event_time.desc()).limit(1)
    if topic is not None:
        query = query.where(c.kafka_topic == topic)
    try:
        with db.connect() as conn:
            value = conn.execute(query).scalar()
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return value


def load_history(
    db: Engine,
    topic: str | None,
    since: datetime,
    *,
    partitions: Collection[int] | None = None,
    exclude_partitions: Collection[int] = (),
    after_id: int = 0,
) -> History:
    """Stored payments with event time >= ``since`` (naive UTC), oldest first.

    ``partitions`` limits the read to those Kafka partitions; ``exclude_partitions`` skips
    some; ``after_id`` reads only rows written since an earlier read (incremental refresh).
    """
    c = scored_transactions.c
    conditions = [c.event_time >= since]
    if topic is not None:
        conditions.append(c.kafka_topic == topic)
    if partitions is not None:
        conditions.append(c.kafka_partition.in_(sorted(partitions)))
    if exclude_partitions:
        conditions.append(c.kafka_partition.not_in(sorted(exclude_partitions)))
    if after_id:
        conditions.append(c.id > after_id)
    query = (
        select(
            c.id,
            c.transaction_id,
            c.customer_id,
            c.terminal_id,
            c.amount,
            c.event_time,
            c.kafka_partition,
            c.amount_ratio,
        )
        .where(and_(*conditions))
        .order_by(c.event_time, c.id)
    )
    out = History(last_id=after_id)
    try:
        with db.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=_FETCH_ROWS).execute(
                query
            )
            for row_id, tx, cust, term, amount, at, part, ratio in result:
                out.transaction_ids.append(tx)
                out.customer_ids.append(cust)
                out.terminal_ids.append(term)
                out.amounts.append(float(amount))
                out.times.append(_epoch(at))
                out.partitions.append(part)
                out.ratios.append(None if ratio is None else float(ratio))
                if row_id > out.last_id:
                    out.last_id = row_id
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return out


def load_labels(db: Engine, known_after: datetime | None = None) -> list[Label]:
    """The counting fraud labels (``fraud_labels``: an analyst's verdict over labels-topic
    labels, see store/labels.py), optionally only those known after a moment (naive UTC)."""
    c = fraud_labels.c
    query = select(c.transaction_id, c.is_fraud, c.known_at).order_by(c.known_at)
    if known_after is not None:
        query = query.where(c.known_at > known_after)
    try:
        with db.connect() as conn:
            return [
                Label(tx, bool(fraud), at.replace(tzinfo=timezone.utc))
                for tx, fraud, at in conn.execute(query)
            ]
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def label_cursor(db: Engine) -> int:
    """The newest ``label_events.id`` (0 when none): where the next ``labels_after`` starts."""
    try:
        with db.connect() as conn:
            return int(conn.execute(select(func.max(label_events.c.id))).scalar() or 0)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def labels_after(db: Engine, cursor: int) -> tuple[list[Label], int]:
    """The counting labels of every payment with a label event after ``cursor``, and the new
    cursor. Events are ordered by their id, the order they were stored in: ``known_at`` is no
    cursor, since an analyst's is a wall-clock time and a stream label's an event time that
    may be years older, so the newest of one would hide the other."""
    e, f = label_events.c, fraud_labels.c
    try:
        with db.connect() as conn:
            newest = int(conn.execute(select(func.max(e.id))).scalar() or 0)
            if newest <= cursor:
                return [], cursor
            changed = select(e.transaction_id).where(e.id > cursor, e.id <= newest)
            query = (
                select(f.transaction_id, f.is_fraud, f.known_at)
                .where(f.transaction_id.in_(changed))
                .order_by(f.known_at)
            )
            labels = [
                Label(tx, bool(fraud), at.replace(tzinfo=timezone.utc))
                for tx, fraud, at in conn.execute(query)
            ]
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return labels, newest


def history_start(latest: datetime, label_delay_days: int) -> datetime:
    """Oldest event time a rebuild needs, given the newest stored one."""
    return latest - timedelta(days=HISTORY_DAYS + label_delay_days)


def iter_chunks(history: History, size: int = 50_000) -> Iterator[slice]:
    """Slices over a history, to replay it in bounded pieces."""
    for start in range(0, len(history), size):
        yield slice(start, min(start + size, len(history)))


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=timezone.utc).timestamp()
