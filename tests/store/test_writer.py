"""The batch writer on SQLite: one transaction, duplicates recorded, offsets idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, func, select

from payscore.errors import ServiceUnavailable
from payscore.store.schema import (
    consumer_offsets,
    dead_letters,
    duplicates,
    metadata,
    scored_transactions,
)
from payscore.store.writer import DeadLetterRecord, DecisionWriter, DuplicateRecord
from tests.store.rows import T0, row


@pytest.fixture
def engine(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_writes_everything_and_offsets(engine):
    w = DecisionWriter(engine)
    dup = DuplicateRecord("x", "payments", 0, 2, T0)
    dead = DeadLetterRecord("payments", 0, 3, "json", "bad", 1, T0)
    result = w.write_batch([row("a", 0), row("b", 1)], [dup], [dead], {("g", "payments", 0): 4})
    assert (result.decided, result.duplicates, result.dead_letters) == (2, 1, 1)
    assert count(engine, scored_transactions) == 2
    assert count(engine, duplicates) == 1
    assert count(engine, dead_letters) == 1
    assert w.read_offsets("g", "payments") == {0: 4}
    assert w.read_offsets("other", "payments") == {}


def test_duplicates_are_recorded_not_dropped(engine):
    w = DecisionWriter(engine)
    w.write_batch([row("a", 0)], offsets={("g", "payments", 0): 1})
    # "a" is already stored, "b" appears twice in the batch: both extras become duplicates.
    result = w.write_batch(
        [row("a", 1), row("b", 2), row("b", 3), row("c", 4)], offsets={("g", "payments", 0): 5}
    )
    assert result.decided == 2
    assert result.duplicates == 2
    assert sorted(result.duplicate_ids) == ["a", "b"]
    assert count(engine, scored_transactions) == 3
    with engine.connect() as conn:
        offsets = sorted(conn.execute(select(duplicates.c.source_offset)).scalars())
    assert offsets == [1, 3]


def test_insert_race_falls_back_row_by_row(engine, monkeypatch):
    """A duplicate the pre-check misses (another writer) still costs only that row."""
    w = DecisionWriter(engine)
    w.write_batch([row("a", 0, partition=1)])
    monkeypatch.setattr("payscore.store.writer._existing", lambda conn, ids: set())
    result = w.write_batch([row("a", 0), row("b", 1)], offsets={("g", "payments", 0): 2})
    assert result.decided == 1
    assert result.duplicate_ids == ("a",)
    assert count(engine, scored_transactions) == 2
    assert count(engine, duplicates) == 1


def test_replayed_batch_is_skipped(engine):
    w = DecisionWriter(engine)
    batch = [row("a", 10), row("b", 11)]
    dead = [DeadLetterRecord("payments", 0, 12, "schema", "bad", 1, T0)]
    w.write_batch(batch, (), dead, {("g", "payments", 0): 13})
    again = w.write_batch(batch, (), dead, {("g", "payments", 0): 13})
    assert again.decided == 0
    assert again.skipped_replayed == 3
    assert again.duplicates == 0
    assert count(engine, scored_transactions) == 2
    assert count(engine, dead_letters) == 1
    assert w.read_offsets("g", "payments") == {0: 13}


def test_offsets_never_move_backwards(engine):
    w = DecisionWriter(engine)
    w.write_batch([], offsets={("g", "payments", 0): 50, ("g", "payments", 1): 7})
    w.write_batch([], offsets={("g", "payments", 0): 20, ("g", "payments", 1): 9})
    assert w.read_offsets("g", "payments") == {0: 50, 1: 9}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consumer_offsets)).scalar_one() == 2


def test_failure_mid_write_leaves_nothing(engine):
    """If any statement of the batch fails, no decision, duplicate or offset is stored."""
    w = DecisionWriter(engine)

    def fail_on_offsets(conn, cursor, statement, *args):
        if "consumer_offsets" in statement and statement.lstrip().upper().startswith("INSERT"):
            raise RuntimeError("disk on fire")

    event.listen(engine, "before_cursor_execute", fail_on_offsets)
    with pytest.raises(RuntimeError):
        w.write_batch(
            [row("a", 0), row("b", 1)],
            [DuplicateRecord("x", "payments", 0, 2, T0)],
            [DeadLetterRecord("payments", 0, 3, "json", "bad", 1, T0)],
            {("g", "payments", 0): 4},
        )
    event.remove(engine, "before_cursor_execute", fail_on_offsets)
    for table in (scored_transactions, duplicates, dead_letters, consumer_offsets):
        assert count(engine, table) == 0


def test_unreachable_database_is_service_unavailable(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ServiceUnavailable):
        DecisionWriter(eng).write_batch([row("a", 0)])
