"""The batch write in a child process, so that it does not share the consumer's GIL.

Formatting a batch's parameters into SQL is Python work (mysqlclient interpolates on the
client) about as heavy as scoring the batch. In one process the two take turns on one GIL,
however many threads. :class:`ProcessWriter` keeps ``DecisionWriter`` exactly as it is and runs
its ``write_batch`` in a spawned child with a database engine of its own; every other method
(the lookups, model registration) still runs in the caller's process.

The child is a plain request/response loop over a pipe. It ignores SIGINT and SIGTERM (the
consumer decides when writing stops, and a Ctrl-C reaches the whole process group) and exits
when the pipe closes, so it never outlives the consumer by more than the write in hand. A write
that the child finishes after the consumer died is harmless: its offsets are stored with it,
and a successor's write of the same messages is fenced by them (see ``store/writer.py``).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine

from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.store.writer import DeadLetterRecord, DecisionWriter, DuplicateRecord, WriteResult

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0


class ProcessWriter(DecisionWriter):
    """A ``DecisionWriter`` whose ``write_batch`` runs in a child process.

    The lookups (``read_offsets``, ``existing_ids``) and ``register_model`` stay in this
    process, on ``engine``/``lookup``. Writes are serialised (one batch in flight, as the
    consumer's writer thread does anyway). If the child dies, the write raises
    ``ServiceUnavailable`` and the next one starts a new child, so the caller's retry loop
    covers it like a database outage.
    """

    def __init__(self, settings: Settings, engine: Engine, lookup: Engine | None = None) -> None:
        super().__init__(engine, lookup)
        self.settings = settings
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: Any = None
        self._start()

    def write_batch(
        self,
        decisions: Sequence[dict[str, Any]],
        duplicate_records: Sequence[DuplicateRecord] = (),
        dead_letter_records: Sequence[DeadLetterRecord] = (),
        offsets: Any = None,
        labels: Sequence[dict[str, Any]] = (),
    ) -> WriteResult:
        request = (
            list(decisions),
            list(duplicate_records),
            list(dead_letter_records),
            dict(offsets or {}),
            list(labels),
        )
        with self._lock:
            if self._conn is None:
                self._start()
            assert self._conn is not None
            try:
                self._conn.send(request)
                ok, value = self._conn.recv()
            except (EOFError, OSError) as e:
                self._discard()
                raise ServiceUnavailable(f"the database writer process stopped ({e!r})") from e
        if ok:
            return value
        if isinstance(value, ServiceUnavailable):
            raise value
        raise RuntimeError(f"the database writer process failed: {value}")

    def close(self) -> None:
        """Stop the child after the write in hand (closing the pipe is its signal); idempotent."""
        with self._lock:
            self._discard(wait=True)

    # -- the child's lifecycle -----------------------------------------------------------

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(self.settings, child), name="payscore-db-writer", daemon=True
        )
        proc.start()
        child.close()
        # The child answers once it has an engine: a broken setup fails here, not mid-batch.
        try:
            if not parent.poll(_START_TIMEOUT_S):
                raise ServiceUnavailable("the database writer process did not start")
            ok, detail = parent.recv()
            if not ok:
                raise ServiceUnavailable(f"the database writer process did not start: {detail}")
        except (EOFError, OSError, ServiceUnavailable) as e:
            parent.close()
            proc.kill()
            proc.join(5)
            if isinstance(e, ServiceUnavailable):
                raise
            raise ServiceUnavailable(f"the database writer process did not start ({e!r})") from e
        self._conn, self._proc = parent, proc

    def _discard(self, wait: bool = False) -> None:
        conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.join(timeout=30 if wait else 0.1)
            if proc.is_alive() and not wait:
                log.debug("database writer process still finishing its last write")


def _serve(settings: Settings, conn: Connection) -> None:
    """The child: one engine, one DecisionWriter, one batch at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from payscore.store.engine import make_engine

    try:
        engine = make_engine(settings, pre_ping=False, reset_on_return=False)
        writer = DecisionWriter(engine)
    except Exception as e:  # reported to the parent, which raises it
        conn.send((False, f"{type(e).__name__}: {e}"))
        return
    conn.send((True, None))
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the consumer closed the pipe or died
            try:
                reply: tuple[bool, Any] = (True, writer.write_batch(*request))
            except ServiceUnavailable as e:
                reply = (False, e)
            except Exception as e:  # a bug: surfaced by the parent as a failed write
                reply = (False, f"{type(e).__name__}: {e}")
            try:
                conn.send(reply)
            except (EOFError, OSError):
                return
    finally:
        engine.dispose()
