"""Feature-state snapshots in the database: saved in one transaction, read newest first.

A snapshot is opaque bytes here (``stream/snapshots.py`` encodes them) plus what it covers
(``covers``: plain JSON). It holds the feature state of a whole topic (every partition, its
``partitions`` column is ``*``) as of a stored row id, so any consumer of the group restores it
whatever partitions it is assigned. Saving one deletes the older ones of the group and topic
in the same transaction, so a reader sees either the old snapshot or the new one, never half of
one, and the table holds one snapshot per group and topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from payscore.store.engine import begin_write, database_error
from payscore.store.schema import (
    feature_snapshot_chunks,
    feature_snapshots,
    scored_transactions,
)
from payscore.store.state import History

#: Bytes per stored chunk: below MariaDB's default 16 MiB max_allowed_packet, with room.
CHUNK_BYTES = 4 * 1024 * 1024
#: ``covers_json`` is read before any bytes; a larger one is not a snapshot of ours.
MAX_COVERS_CHARS = 1_000_000
#: The ``partitions`` of a snapshot of every partition of its topic.
ALL_PARTITIONS = "*"
_FETCH_ROWS = 20_000
_PAYMENT_COLUMNS = (
    "transaction_id customer_id terminal_id amount event_time kafka_partition kafka_offset "
    "amount_ratio".split()
)


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot as read back: its row id, format, what it covers and its bytes."""

    id: int
    format_version: int
    created_at: datetime
    covers: dict[str, Any]
    data: bytearray


@dataclass
class Payments(History):
    """``History`` with each payment's offset (-1: stored without one; so is a partition)."""

    offsets: list[int] = field(default_factory=list)


def save(
    db: Engine,
    group: str,
    topic: str,
    format_version: int,
    covers: dict[str, Any],
    data: bytes,
    created_at: datetime,
) -> int:
    """Store one snapshot of the topic and drop the group's older ones, all or nothing."""
    s = feature_snapshots.c
    try:
        with db.begin() as conn:
            begin_write(conn)
            key_row = conn.execute(
                insert(feature_snapshots).values(
                    group_id=group,
                    topic=topic,
                    partitions=ALL_PARTITIONS,
                    format_version=format_version,
                    created_at=created_at,
                    size_bytes=len(data),
                    covers_json=json.dumps(covers),
                )
            ).inserted_primary_key
            assert key_row is not None
            new_id = key_row[0]
            view = memoryview(data)
            for i, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES)):
                # One at a time: a multi-row insert would exceed the packet.
                chunk = bytes(view[start : start + CHUNK_BYTES])
                conn.execute(
                    insert(feature_snapshot_chunks),
                    {"snapshot_id": new_id, "seq": i, "data": chunk},
                )
            old = conn.execute(
                select(s.id).where(s.group_id == group, s.topic == topic, s.id != new_id)
            )
            _delete(conn, [r[0] for r in old])
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return int(new_id)


def load_newest(db: Engine, group: str, topic: str, max_bytes: int) -> StoredSnapshot | None:
    """The group's newest snapshot of the topic, or None. One larger than ``max_bytes`` (by
    its row or by its chunks) is refused with ``ValueError``."""
    s, ch = feature_snapshots.c, feature_snapshot_chunks.c
    try:
        with db.connect() as conn:
            row = conn.execute(
                select(s.id, s.format_version, s.created_at, s.size_bytes, s.covers_json)
                .where(s.group_id == group, s.topic == topic)
                .order_by(s.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            snap_id, version, created, size, covers_json = row
            if size > max_bytes or len(covers_json) > MAX_COVERS_CHARS:
                raise ValueError(f"snapshot {snap_id} is {size} bytes, over {max_bytes}")
            stored = conn.execute(
                select(func.coalesce(func.sum(func.length(ch.data)), 0)).where(
                    ch.snapshot_id == snap_id
                )
            ).scalar()
            if int(stored or 0) != size:
                raise ValueError(f"snapshot {snap_id} holds {stored} bytes, not {size}")
            data = bytearray(size)  # filled in place: no second copy of a large snapshot
            at = 0
            for (chunk,) in conn.execute(
                select(ch.data).where(ch.snapshot_id == snap_id).order_by(ch.seq)
            ):
                if at + len(chunk) > size:
                    raise ValueError(f"snapshot {snap_id} chunks run past {size} bytes")
                data[at : at + len(chunk)] = chunk
                at += len(chunk)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    covers = json.loads(covers_json)
    if not isinstance(covers, dict):
        raise ValueError(f"snapshot {snap_id} has malformed coverage")
    return StoredSnapshot(int(snap_id), int(version), created, covers, data)


def drop(db: Engine, group: str, topic: str) -> int:
    """Delete every snapshot of a group and topic (tests, and a reset by hand)."""
    s = feature_snapshots.c
    try:
        with db.begin() as conn:
            begin_write(conn)
            ids = [
                r[0]
                for r in conn.execute(select(s.id).where(s.group_id == group, s.topic == topic))
            ]
            _delete(conn, ids)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return len(ids)


def newest_row_id(db: Engine) -> int:
    """The highest ``scored_transactions.id`` (0 when empty)."""
    try:
        with db.connect() as conn:
            return int(conn.execute(select(func.max(scored_transactions.c.id))).scalar() or 0)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def read_payments(db: Engine, topic: str, since: datetime, after_id: int, upto_id: int) -> Payments:
    """The topic's stored payments with ``after_id < id <= upto_id`` and event time at or
    after ``since`` (naive UTC), oldest first, with their partitions and offsets."""
    c = scored_transactions.c
    query = (
        select(*(c[name] for name in _PAYMENT_COLUMNS))
        .where(c.id > after_id, c.id <= upto_id, c.kafka_topic == topic, c.event_time >= since)
        .order_by(c.event_time, c.id)
    )
    out = Payments()
    try:
        with db.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=_FETCH_ROWS)
            for tx, cust, term, amount, at, part, offset, ratio in rows.execute(query):
                out.transaction_ids.append(tx)
                out.customer_ids.append(cust)
                out.terminal_ids.append(term)
                out.amounts.append(float(amount))
                out.times.append(at.replace(tzinfo=timezone.utc).timestamp())
                out.partitions.append(-1 if part is None else int(part))
                out.offsets.append(-1 if offset is None else int(offset))
                out.ratios.append(None if ratio is None else float(ratio))
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return out


def _delete(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(
            delete(feature_snapshot_chunks).where(feature_snapshot_chunks.c.snapshot_id.in_(ids))
        )
        conn.execute(delete(feature_snapshots).where(feature_snapshots.c.id.in_(ids)))
