"""Feature-state snapshots in the database: saved in one transaction, read newest first.

A snapshot is opaque bytes here (``stream/snapshots.py`` encodes them) plus what it covers
(``covers``: plain JSON). It is keyed by consumer group, topic and the set of partitions whose
customers it holds; saving one deletes the older ones of the same key, in the same transaction,
so a reader sees either the old snapshot or the new one, never half of one; snapshots of
other partition sets that share a partition with the new one go too.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from payscore.store.engine import begin_write, database_error
from payscore.store.schema import (
    feature_snapshot_chunks,
    feature_snapshots,
    scored_transactions,
)

#: Bytes per stored chunk: below MariaDB's default 16 MiB max_allowed_packet, with room.
CHUNK_BYTES = 4 * 1024 * 1024
#: ``covers_json`` is read before any bytes; a larger one is not a snapshot of ours.
MAX_COVERS_CHARS = 1_000_000


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot as read back: its row id, format, what it covers and its bytes."""

    id: int
    format_version: int
    created_at: datetime
    covers: dict[str, Any]
    data: bytes


def partitions_key(partitions: Collection[int]) -> str:
    """The stored form of a partition set: sorted, comma-separated."""
    return ",".join(str(p) for p in sorted(partitions))


def save(
    db: Engine,
    group: str,
    topic: str,
    partitions: Collection[int],
    format_version: int,
    covers: dict[str, Any],
    data: bytes,
    created_at: datetime,
) -> int:
    """Store one snapshot and drop the older ones sharing a partition, all or nothing."""
    key = partitions_key(partitions)
    s = feature_snapshots.c
    try:
        with db.begin() as conn:
            begin_write(conn)
            key_row = conn.execute(
                insert(feature_snapshots).values(
                    group_id=group,
                    topic=topic,
                    partitions=key,
                    format_version=format_version,
                    created_at=created_at,
                    size_bytes=len(data),
                    covers_json=json.dumps(covers),
                )
            ).inserted_primary_key
            assert key_row is not None
            new_id = key_row[0]
            rows = [
                {"snapshot_id": new_id, "seq": i, "data": data[start : start + CHUNK_BYTES]}
                for i, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES))
            ]
            for row in rows:  # one at a time: a multi-row insert would exceed the packet
                conn.execute(insert(feature_snapshot_chunks), row)
            # Older snapshots sharing a partition with this one are stale (a partition has one
            # owner at a time): at most one snapshot per partition survives, so the table
            # stays bounded however often the group rebalances.
            mine = set(partitions)
            old = [
                snap_id
                for snap_id, stored in conn.execute(
                    select(s.id, s.partitions).where(
                        s.group_id == group, s.topic == topic, s.id != new_id
                    )
                )
                if mine & {int(p) for p in stored.split(",") if p}
            ]
            _delete(conn, old)
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return int(new_id)


def load_newest(
    db: Engine, group: str, topic: str, partitions: Collection[int], max_bytes: int
) -> StoredSnapshot | None:
    """The newest snapshot of exactly these partitions, or None. One larger than
    ``max_bytes`` (by its row or by its chunks) is refused with ``ValueError``."""
    s, ch = feature_snapshots.c, feature_snapshot_chunks.c
    key = partitions_key(partitions)
    try:
        with db.connect() as conn:
            row = conn.execute(
                select(s.id, s.format_version, s.created_at, s.size_bytes, s.covers_json)
                .where(s.group_id == group, s.topic == topic, s.partitions == key)
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
            parts = [
                bytes(data)
                for (data,) in conn.execute(
                    select(ch.data).where(ch.snapshot_id == snap_id).order_by(ch.seq)
                )
            ]
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    covers = json.loads(covers_json)
    if not isinstance(covers, dict):
        raise ValueError(f"snapshot {snap_id} has malformed coverage")
    return StoredSnapshot(int(snap_id), int(version), created, covers, b"".join(parts))


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


def first_other_row(
    db: Engine, topic: str, partitions: Collection[int], after_id: int, upto_id: int
) -> int | None:
    """The lowest id in ``(after_id, upto_id]`` of a payment of ``topic`` outside
    ``partitions`` (another consumer's), or None: how far the others' cursor may move."""
    c = scored_transactions.c
    query = select(func.min(c.id)).where(
        c.id > after_id,
        c.id <= upto_id,
        c.kafka_topic == topic,
        c.kafka_partition.not_in(sorted(partitions)),
    )
    try:
        with db.connect() as conn:
            value = conn.execute(query).scalar()
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return None if value is None else int(value)


def _delete(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(
            delete(feature_snapshot_chunks).where(feature_snapshot_chunks.c.snapshot_id.in_(ids))
        )
        conn.execute(delete(feature_snapshots).where(feature_snapshots.c.id.in_(ids)))
