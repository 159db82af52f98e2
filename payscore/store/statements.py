"""The writer's statements, built once per process (or once per dialect).

Building a statement, and computing its cache key, cost more CPU per batch than executing it
(8.3 -> 2.8 ms for a batch of 30 once they were built once). ``store/writer.py`` executes them.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from payscore.store.schema import consumer_offsets, scored_transactions

INSERT_DECISIONS = insert(scored_transactions)
_c = consumer_offsets.c
LOCK_OFFSETS = (
    select(_c.topic, _c.kafka_partition, _c.next_offset)
    .where(tuple_(_c.group_id, _c.topic, _c.kafka_partition).in_(bindparam("keys", expanding=True)))
    .with_for_update()
)
_txid = scored_transactions.c.transaction_id
# The pipeline's duplicate check, once per batch: 3.0 -> 2.2 ms of CPU for 500 ids.
EXISTING = select(_txid).where(_txid.in_(bindparam("ids", expanding=True)))


@functools.cache
def insert_ignore(dialect: str, table: Any) -> Any:
    """INSERT that skips rows whose unique source coordinates are already stored."""
    if dialect == "sqlite":
        return sqlite_dialect.insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE")


@functools.cache
def increment_upsert(
    dialect: str, table: Any, keys: tuple[str, ...], counts: tuple[str, ...]
) -> Any:
    """INSERT of new ``keys`` rows that adds to existing ones (col = col + the new value), for
    counts kept by increments, which commute between writers (rollup, drift histograms)."""
    if dialect == "sqlite":
        stmt = sqlite_dialect.insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in counts}
        )
    if dialect in {"mysql", "mariadb"}:
        mstmt = mysql_dialect.insert(table)
        return mstmt.on_duplicate_key_update({c: table.c[c] + mstmt.inserted[c] for c in counts})
    raise NotImplementedError(f"no counting upsert for the {dialect} dialect")


@functools.cache
def offsets_upsert(dialect: str) -> Any:
    """INSERT of next offsets that never moves a stored offset backwards."""
    if dialect == "sqlite":
        stmt = sqlite_dialect.insert(consumer_offsets)
        return stmt.on_conflict_do_update(
            index_elements=["group_id", "topic", "kafka_partition"],
            set_={
                "next_offset": func.max(_c.next_offset, stmt.excluded.next_offset),
                "updated_at": stmt.excluded.updated_at,
            },
        )
    mstmt = mysql_dialect.insert(consumer_offsets)
    return mstmt.on_duplicate_key_update(
        next_offset=func.greatest(_c.next_offset, mstmt.inserted.next_offset),
        updated_at=mstmt.inserted.updated_at,
    )
