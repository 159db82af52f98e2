"""ProcessWriter: the batch write in a child process, on SQLite (no services needed)."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.process import ProcessWriter
from payscore.store.schema import consumer_offsets, scored_transactions
from payscore.store.writer import BatchRequest
from tests.store import rows

T0 = datetime(2030, 5, 1, 12, 0, 0, 250)


def row(tx: str, offset: int) -> dict[str, Any]:
    return rows.row(tx, offset, when=T0)


@pytest.fixture
def writer(tmp_path: Any) -> Any:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}")
    engine = make_engine(settings)
    create_schema(engine)
    w = ProcessWriter(settings, engine)
    yield w
    w.close()
    engine.dispose()


def request(rows_: list[dict[str, Any]], next_offset: int) -> BatchRequest:
    return BatchRequest(rows_, [], [], {("g", "payments", 0): next_offset}, [])


def stored(writer: ProcessWriter) -> tuple[int, dict[int, int]]:
    with writer.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(scored_transactions)).scalar_one()
        c = consumer_offsets.c
        offs = conn.execute(select(c.kafka_partition, c.next_offset))
        return int(n), {int(p): int(o) for p, o in offs}


def test_writes_in_the_child_and_reports_like_the_local_writer(writer: ProcessWriter) -> None:
    child = writer._proc
    assert child is not None and child.pid != os.getpid() and child.is_alive()
    result = writer.write_batch(
        [row("a", 0), row("b", 1), row("a", 2)], offsets={("g", "payments", 0): 3}
    )
    assert (result.decided, result.duplicates, result.duplicate_ids) == (2, 1, ("a",))
    assert stored(writer) == (2, {0: 3})
    # Same batch again: fenced by the stored offsets, as in-process.
    again = writer.write_batch([row("a", 0), row("b", 1)], offsets={("g", "payments", 0): 2})
    assert (again.decided, again.skipped_replayed) == (0, 2)
    with writer.engine.connect() as conn:
        when = conn.execute(select(scored_transactions.c.event_time)).scalars().first()
    assert when == T0
    assert writer.existing_ids(["a", "b", "z"]) == {"a", "b"}  # lookups stay local


def test_a_dead_child_is_an_outage_then_replaced(writer: ProcessWriter) -> None:
    writer.write_batch([row("a", 0)], offsets={("g", "payments", 0): 1})
    old = writer._proc
    os.kill(old.pid, signal.SIGKILL)
    old.join(10)
    with pytest.raises(ServiceUnavailable, match="writer process stopped"):
        writer.write_batch([row("b", 1)], offsets={("g", "payments", 0): 2})
    result = writer.write_batch([row("b", 1)], offsets={("g", "payments", 0): 2})
    assert result.decided == 1 and writer._proc is not old
    assert stored(writer) == (2, {0: 2})


def test_child_ignores_ctrl_c_and_stops_when_closed(writer: ProcessWriter) -> None:
    child = writer._proc
    os.kill(child.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    assert writer.write_batch([row("a", 0)]).decided == 1
    writer.close()
    child.join(10)
    assert not child.is_alive() and child.exitcode == 0
    writer.close()  # idempotent


def test_a_child_that_cannot_start_is_a_clear_outage(tmp_path: Any) -> None:
    """The child reports a broken setup at once; the caller gets ServiceUnavailable."""
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    broken = Settings.model_construct(database_url="nosuchdialect://u@localhost/db")
    try:
        with pytest.raises(ServiceUnavailable, match="did not start"):
            ProcessWriter(broken, engine)
    finally:
        engine.dispose()


def test_staging_writes_nothing_until_the_write_is_asked_for(writer: ProcessWriter) -> None:
    first = writer.stage_batch(request([row("a", 0)], 1))
    second = writer.stage_batch(request([row("b", 1)], 2))
    assert stored(writer) == (0, {})  # the child holds both, unwritten
    assert writer.write_staged(first).decided == 1
    assert stored(writer) == (1, {0: 1})
    assert writer.write_staged(second).decided == 1
    assert stored(writer) == (2, {0: 2})


def test_staged_batches_survive_a_dead_child(writer: ProcessWriter) -> None:
    """Batches staged before (and while) the child is dead are sent again to its successor."""
    first = writer.stage_batch(request([row("a", 0)], 1))
    old = writer._proc
    os.kill(old.pid, signal.SIGKILL)
    old.join(10)
    second = writer.stage_batch(request([row("b", 1)], 2))  # no raise
    with pytest.raises(ServiceUnavailable, match="writer process stopped"):
        writer.write_staged(first)
    assert writer.write_staged(first).decided == 1 and writer._proc is not old
    assert writer.write_staged(second).decided == 1
    assert stored(writer) == (2, {0: 2})


def test_a_dropped_batch_cannot_be_written(writer: ProcessWriter) -> None:
    token = writer.stage_batch(request([row("a", 0)], 1))
    writer.drop_staged(token)
    with pytest.raises(RuntimeError, match="not staged"):
        writer.write_staged(token)
    assert stored(writer) == (0, {})
    assert writer.write_batch([row("b", 0)]).decided == 1  # the writer still works


def test_a_child_missing_a_batch_is_replaced_and_sent_it_again(writer: ProcessWriter) -> None:
    """Should never happen; if it does, the retry heals it instead of failing forever."""
    from payscore.store.process import _pickled

    token = writer.stage_batch(request([row("a", 0)], 1))
    with writer._send_lock:
        writer._send(_pickled(("drop", token)))  # the child forgets it; this side does not
    old = writer._proc
    with pytest.raises(ServiceUnavailable, match="has no batch"):
        writer.write_staged(token)
    assert writer.write_staged(token).decided == 1 and writer._proc is not old
    assert stored(writer) == (1, {0: 1})


def test_writer_child_whose_parent_is_gone_exits_quietly(tmp_path, capfd):
    """A consumer killed during start-up: its writer child returns, no BrokenPipeError trace."""
    from multiprocessing import Pipe

    from payscore.config import Settings
    from payscore.store import process

    parent_end, child_end = Pipe()
    parent_end.close()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gone.db'}")
    process._serve(settings, child_end)  # raised BrokenPipeError before
    assert "Traceback" not in capfd.readouterr().err
