"""The hot-path batch writer: decisions, duplicates, dead letters and offsets in one transaction.

Exactly-once effect comes from storing the consumer's next offsets in the same transaction as
the decisions they cover: after a crash the consumer seeks to the stored offsets, so every
message is either fully written (with its offset) or not at all. The writer is also defensive
about a batch that arrives twice (rows whose source offset is below the stored next offset are
skipped) and about duplicate transaction ids (recorded in ``duplicates``, never a lost batch).
The decisions actually inserted are also counted into ``decision_rollup`` in that transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from payscore.store.drift import add_counts
from payscore.store.engine import begin_write, database_error
from payscore.store.labels import record_stream_labels
from payscore.store.rollup import add_decisions
from payscore.store.schema import (
    consumer_offsets,
    dead_letters,
    duplicates,
    model_versions,
    scored_transactions,
)
from payscore.store.statements import (
    EXISTING,
    INSERT_DECISIONS,
    LOCK_OFFSETS,
    insert_ignore,
    offsets_upsert,
)

# (group, topic, partition) -> next offset to read, i.e. last written offset + 1.
Offsets = Mapping[tuple[str, str, int], int]
# Keep IN (...) lists well below every driver's parameter limit.
_IN_CHUNK = 500


@dataclass(frozen=True)
class DuplicateRecord:
    """A message whose transaction id was already decided; kept for accounting."""

    transaction_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    seen_at: datetime  # naive UTC


@dataclass(frozen=True)
class DeadLetterRecord:
    """A message that could not be decided; the raw bytes live in the dead-letter topic."""

    source_topic: str
    source_partition: int
    source_offset: int
    error_kind: str
    error_message: str
    attempt: int
    created_at: datetime  # naive UTC


@dataclass(frozen=True)
class BatchRequest:
    """One batch's write: what ``write_batch`` takes, as one value (staged, sent, retried)."""

    decisions: list[dict[str, Any]]
    duplicates: list[DuplicateRecord]
    dead_letters: list[DeadLetterRecord]
    offsets: dict[tuple[str, str, int], int]
    labels: list[dict[str, Any]]
    drift: Any = None  # core.drift.Codes of ``decisions``: counted for the rows inserted


@dataclass(frozen=True)
class WriteResult:
    """What one ``write_batch`` call stored."""

    decided: int = 0
    duplicates: int = 0  # duplicates recorded, including ones only found at insert time
    dead_letters: int = 0
    skipped_replayed: int = 0  # rows at or below the stored offsets, already written before
    duplicate_ids: tuple[str, ...] = ()  # decision rows turned into duplicates by the writer


def stored_offsets(db: Engine, group: str, topic: str) -> dict[int, int]:
    """Stored next offsets of every partition of ``topic`` the group has written."""
    query = select(consumer_offsets.c.kafka_partition, consumer_offsets.c.next_offset).where(
        consumer_offsets.c.group_id == group, consumer_offsets.c.topic == topic
    )
    try:
        with db.connect() as conn:
            return {int(p): int(o) for p, o in conn.execute(query)}
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e


def utcnow() -> datetime:
    """Now as the naive UTC datetime the schema stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class DecisionWriter:
    """Writes one consumer batch per transaction. Holds no rows between calls.

    ``lookup`` is an optional autocommit engine for the single-statement reads (offsets,
    known ids): one round trip each, with no transaction to end afterwards.
    """

    def __init__(self, engine: Engine, lookup: Engine | None = None) -> None:
        self.engine = engine
        self.lookup = lookup or engine
        self._dialect = engine.dialect.name

    def close(self) -> None:
        """Release what the writer owns: nothing here (the engines are the caller's)."""

    # -- reads -----------------------------------------------------------------------------

    def read_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Stored next offsets of every partition of ``topic`` this group has written."""
        return stored_offsets(self.lookup, group, topic)

    def existing_ids(self, transaction_ids: Iterable[str]) -> set[str]:
        """Which of these transaction ids already have a stored decision."""
        ids = list(dict.fromkeys(transaction_ids))
        if not ids:
            return set()
        try:
            with self.lookup.connect() as conn:
                return _existing(conn, ids)
        except SQLAlchemyError as e:
            raise database_error(e, self.lookup.url) from e

    def ping(self) -> None:
        """Raise ServiceUnavailable unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            if self.lookup is not self.engine:
                with self.lookup.connect() as conn:
                    conn.execute(select(1))
        except SQLAlchemyError as e:
            raise database_error(e, self.engine.url) from e

    # -- the write -------------------------------------------------------------------------

    def write_batch(
        self,
        decisions: Sequence[dict[str, Any]],
        duplicate_records: Sequence[DuplicateRecord] = (),
        dead_letter_records: Sequence[DeadLetterRecord] = (),
        offsets: Offsets | None = None,
        labels: Sequence[dict[str, Any]] = (),
    ) -> WriteResult:
        """Store a batch atomically; safe to call again with the same batch.

        ``decisions`` are ``scored_transactions`` rows (column name -> value). Rows carrying
        ``kafka_topic``/``kafka_partition``/``kafka_offset`` below the stored next offset of
        their partition are skipped as already written. ``labels`` are labels-topic labels,
        stored by ``store.labels.record_stream_labels`` (an analyst's verdict is kept).
        """
        request = BatchRequest(
            list(decisions),
            list(duplicate_records),
            list(dead_letter_records),
            dict(offsets or {}),
            list(labels),
        )
        handle = self.stage_batch(request)
        try:
            return self.write_staged(handle)
        finally:
            self.drop_staged(handle)

    def stage_batch(self, request: BatchRequest) -> Any:
        """Hand a batch over ahead of its write; ``write_staged`` writes it (and may retry).

        Here the handle is the request itself. ``ProcessWriter`` ships the batch to its child
        at once, so that the child has it in hand when the write is asked for.
        """
        return request

    def write_staged(self, handle: Any) -> WriteResult:
        """Write a staged batch (see ``write_batch``); safe to call again after a failure."""
        r: BatchRequest = handle
        try:
            try:
                return self._transaction(
                    r.decisions, r.duplicates, r.dead_letters, r.offsets, r.labels, False, r.drift
                )
            except _Raced:  # rolled back; again, inserting row by row this time
                return self._transaction(
                    r.decisions, r.duplicates, r.dead_letters, r.offsets, r.labels, True, r.drift
                )
        except SQLAlchemyError as e:
            raise database_error(e, self.engine.url) from e

    def drop_staged(self, handle: Any) -> None:
        """Forget a staged batch that will not be written (nothing to forget here)."""

    def _transaction(
        self,
        decisions: Sequence[dict[str, Any]],
        dups: Sequence[DuplicateRecord],
        dead: Sequence[DeadLetterRecord],
        offsets: dict[tuple[str, str, int], int],
        labels: Sequence[dict[str, Any]],
        careful: bool,
        drift: Any = None,
    ) -> WriteResult:
        with self.engine.begin() as conn:
            result = self._write(conn, decisions, dups, dead, offsets, careful, drift)
            if labels:
                self._upsert_labels(conn, labels)
            return result

    def _write(
        self,
        conn: Connection,
        decisions: Sequence[dict[str, Any]],
        dups: Sequence[DuplicateRecord],
        dead: Sequence[DeadLetterRecord],
        offsets: dict[tuple[str, str, int], int],
        careful: bool,
        drift: Any = None,
    ) -> WriteResult:
        begin_write(conn)  # SQLite: all or nothing; see begin_write
        stored = self._lock_offsets(conn, offsets)

        def fresh(topic: str | None, partition: int | None, offset: int | None) -> bool:
            if topic is None or partition is None or offset is None:
                return True
            floor = stored.get((topic, partition))
            return floor is None or offset >= floor

        rows = [
            r
            for r in decisions
            if fresh(r.get("kafka_topic"), r.get("kafka_partition"), r.get("kafka_offset"))
        ]
        dup_rows = [
            _asdict_dup(d)
            for d in dups
            if fresh(d.source_topic, d.source_partition, d.source_offset)
        ]
        dead_rows = [
            _asdict_dead(d)
            for d in dead
            if fresh(d.source_topic, d.source_partition, d.source_offset)
        ]
        skipped = (
            (len(decisions) - len(rows))
            + (len(dups) - len(dup_rows))
            + (len(dead) - len(dead_rows))
        )

        # The pipeline already dropped ids it knew were stored; repeats within the batch are
        # caught here, and ids stored meanwhile by another writer by the insert's fallback.
        known: set[str] = set()
        unique: list[dict[str, Any]] = []
        late_dups: list[dict[str, Any]] = []
        for r in rows:
            if r["transaction_id"] in known:
                late_dups.append(r)
            else:
                known.add(r["transaction_id"])
                unique.append(r)

        inserted, raced = self._insert_decisions(conn, unique, careful)
        late_dups.extend(raced)
        now = utcnow()
        dup_rows.extend(_dup_from_decision(r, now) for r in late_dups if r.get("kafka_topic"))

        if dup_rows:
            conn.execute(self._insert_ignore(duplicates), dup_rows)
        if dead_rows:
            conn.execute(self._insert_ignore(dead_letters), dead_rows)
        if offsets:
            self._upsert_offsets(conn, offsets, now)
        # Last, so the shared hot rollup rows are locked only for the commit.
        lost = {id(r) for r in raced}
        written = [r for r in unique if id(r) not in lost] if lost else unique
        add_decisions(conn, written)
        add_counts(conn, drift, decisions, written)  # drift bins of the same rows
        return WriteResult(
            decided=inserted,
            duplicates=len(dup_rows),
            dead_letters=len(dead_rows),
            skipped_replayed=skipped,
            duplicate_ids=tuple(r["transaction_id"] for r in late_dups),
        )

    def _insert_decisions(
        self, conn: Connection, rows: list[dict[str, Any]], careful: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        """Insert the rows; returns (inserted, losers of a unique-key race).

        First all at once with no savepoint (two round trips saved per batch). If another
        writer stored one of these ids since we looked, part of the insert may have landed,
        so the whole transaction is rolled back (``_Raced``) and redone ``careful``ly: row by
        row, each in a savepoint, the losers becoming duplicates.
        """
        if not rows:
            return 0, []
        if not careful:
            try:
                conn.execute(INSERT_DECISIONS, rows)
            except IntegrityError as e:
                raise _Raced from e
            return len(rows), []
        losers = []
        stmt = insert(scored_transactions)
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(stmt, row)
            except IntegrityError:
                losers.append(row)
        return len(rows) - len(losers), losers

    def _lock_offsets(
        self, conn: Connection, offsets: Mapping[tuple[str, str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Stored next offsets for the batch's partitions, row-locked where supported.

        The lock serialises two consumers that both believe they own a partition (a zombie
        after a rebalance): the second sees the first's offsets and skips what it wrote.
        """
        if not offsets:
            return {}
        found = conn.execute(LOCK_OFFSETS, {"keys": list(offsets)})
        return {(t, int(p)): int(o) for t, p, o in found}

    def _upsert_offsets(
        self, conn: Connection, offsets: Mapping[tuple[str, str, int], int], now: datetime
    ) -> None:
        values = [
            {"group_id": g, "topic": t, "kafka_partition": p, "next_offset": o, "updated_at": now}
            for (g, t, p), o in offsets.items()
        ]
        conn.execute(offsets_upsert(self._dialect), values)

    def _upsert_labels(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        record_stream_labels(conn, self._dialect, rows)

    def register_model(self, version: str, trained_at: datetime, metadata_json: str) -> bool:
        """Record a model version (first activation kept); True if it was new."""
        c = model_versions.c
        try:
            with self.engine.begin() as conn:
                found = conn.execute(select(c.version).where(c.version == version)).first()
                if found:
                    return False
                conn.execute(
                    insert(model_versions),
                    {
                        "version": version,
                        "trained_at": trained_at,
                        "activated_at": utcnow(),
                        "metadata_json": metadata_json,
                    },
                )
                return True
        except IntegrityError:
            return False  # registered concurrently by another consumer
        except SQLAlchemyError as e:
            raise database_error(e, self.engine.url) from e

    def _insert_ignore(self, table: Any) -> Any:
        return insert_ignore(self._dialect, table)


class _Raced(Exception):
    """A decision's id was stored by another writer during this batch's insert."""


def _existing(conn: Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _IN_CHUNK):
        found.update(conn.execute(EXISTING, {"ids": ids[i : i + _IN_CHUNK]}).scalars())
    return found


def _asdict_dup(d: DuplicateRecord) -> dict[str, Any]:
    return {
        "transaction_id": d.transaction_id,
        "source_topic": d.source_topic,
        "source_partition": d.source_partition,
        "source_offset": d.source_offset,
        "seen_at": d.seen_at,
    }


def _asdict_dead(d: DeadLetterRecord) -> dict[str, Any]:
    return {
        "source_topic": d.source_topic,
        "source_partition": d.source_partition,
        "source_offset": d.source_offset,
        "error_kind": d.error_kind[:32],
        "error_message": d.error_message[:1024],
        "attempt": d.attempt,
        "created_at": d.created_at,
    }


def _dup_from_decision(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "transaction_id": row["transaction_id"],
        "source_topic": row["kafka_topic"],
        "source_partition": row["kafka_partition"],
        "source_offset": row["kafka_offset"],
        "seen_at": now,
    }
