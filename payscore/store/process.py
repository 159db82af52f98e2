"""The batch write in a child process, so that it does not share the consumer's GIL.

Formatting a batch's parameters into SQL is Python work (mysqlclient interpolates on the
client) about as heavy as scoring the batch. In one process the two take turns on one GIL,
however many threads. :class:`ProcessWriter` keeps ``DecisionWriter`` exactly as it is and runs
its ``write_batch`` in a spawned child with a database engine of its own; every other method
(the lookups, model registration) still runs in the caller's process.

Batches are *staged* first: pickled by the thread that prepared them and sent to the child
at once, where a reader thread unpickles them while the child is still writing the previous
batch. The write itself is then one small request and its reply, in the order the caller asks,
so staging ahead never reorders writes. The child ignores SIGINT and SIGTERM (the
consumer decides when writing stops, and a Ctrl-C reaches the whole process group) and exits
when the pipe closes, so it never outlives the consumer by more than the write in hand. A write
that the child finishes after the consumer died is harmless: its offsets are stored with it,
and a successor's write of the same messages is fenced by them (see ``store/writer.py``).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import queue
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from payscore.config import Settings
from payscore.errors import PayscoreError, ServiceUnavailable
from payscore.store.engine import database_error
from payscore.store.writer import BatchRequest, DecisionWriter, WriteResult

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0


class ProcessWriter(DecisionWriter):
    """A ``DecisionWriter`` whose writes run in a child process.

    The lookups (``read_offsets``, ``existing_ids``) and ``register_model`` stay in this
    process, on ``engine``/``lookup``. ``stage_batch`` pickles a batch and sends it to the child
    at once (the consumer stages on its main thread, while the child may still be writing the
    previous batch); ``write_staged`` then only asks the child to write it and waits. The
    parent keeps every staged batch until it is written or dropped: if the child dies, the
    write raises ``ServiceUnavailable`` and the next one starts a new child and sends it the
    staged batches again, so the caller's retry loop covers it like a database outage.
    """

    def __init__(self, settings: Settings, engine: Engine, lookup: Engine | None = None) -> None:
        super().__init__(engine, lookup)
        self.settings = settings
        self._lock = threading.Lock()  # one write (request and reply) at a time
        self._send_lock = threading.Lock()  # sends come from the staging and writing threads
        self._conn: Connection | None = None
        self._proc: Any = None
        self._staged: dict[int, bytes] = {}  # token -> pickled ("data", token, request)
        self._tokens = itertools.count(1)
        self._conn, self._proc = self._spawn()

    def stage_batch(self, request: BatchRequest) -> int:
        """Pickle the batch here and send it to the child now; never raises for a dead child."""
        token = next(self._tokens)
        data = _pickled(("data", token, request))
        with self._send_lock:
            self._staged[token] = data
            self._send(data)  # a failure shows at the write, which restarts the child
        return token

    def write_staged(self, handle: Any) -> WriteResult:
        token = int(handle)
        with self._lock:
            with self._send_lock:
                if token not in self._staged:
                    raise RuntimeError(f"batch {token} was not staged with this writer")
                replace = self._conn is None
            if replace:  # started without the send lock: the main loop keeps staging meanwhile
                new_conn, new_proc = self._spawn()
                with self._send_lock:
                    self._conn, self._proc = new_conn, new_proc
                    for data in self._staged.values():  # in staging order
                        if not self._send(data):
                            break
            with self._send_lock:
                sent = self._send(_pickled(("write", token)))
            conn = self._conn
            try:
                if not sent or conn is None:
                    raise OSError("the pipe to the writer process is broken")
                ok, value = conn.recv()
            except (EOFError, OSError) as e:
                with self._send_lock:
                    self._discard()
                raise ServiceUnavailable(f"the database writer process stopped ({e!r})") from e
        if ok:
            with self._send_lock:
                self._staged.pop(token, None)  # the child forgot it too
            return value
        if ok is None:  # the child lacks the batch: a new child gets every staged batch again
            with self._send_lock:
                self._discard()
            raise ServiceUnavailable(str(value))
        if isinstance(value, ServiceUnavailable):
            raise value
        raise RuntimeError(f"the database writer process failed: {value}")

    def drop_staged(self, handle: Any) -> None:
        """Forget a staged batch here and in the child (written, or given up)."""
        with self._send_lock:
            if self._staged.pop(int(handle), None) is not None:
                self._send(_pickled(("drop", int(handle))))

    def close(self) -> None:
        """Stop the child after the write in hand (closing the pipe is its signal); idempotent."""
        with self._lock, self._send_lock:
            self._discard(wait=True)
            self._staged.clear()

    def _send(self, data: bytes) -> bool:
        """Send to the child (caller holds ``_send_lock``); False if there is no live pipe."""
        if self._conn is None:
            return False
        try:
            self._conn.send_bytes(data)
            return True
        except OSError:
            return False

    # -- the child's lifecycle -----------------------------------------------------------

    def _spawn(self) -> tuple[Connection, Any]:
        """A new child and the parent's end of its pipe, once the child has its engine."""
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
        return parent, proc

    def _discard(self, wait: bool = False) -> None:
        conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.join(timeout=30 if wait else 0.1)
            if proc.is_alive() and not wait:
                log.debug("database writer process still finishing its last write")


def _serve(settings: Settings, conn: Connection) -> None:
    """The child: one engine, one DecisionWriter; writes staged batches when asked, in order.

    A reader thread takes every message off the pipe as it arrives, so a batch sent while the
    previous one is being written is unpickled during that write's waits on the database.
    A batch stays here until it is written or dropped: a failed write can be asked for again.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from payscore.store.engine import make_engine

    try:
        engine = make_engine(settings, pre_ping=False, reset_on_return=False)
        writer = DecisionWriter(engine)
    except Exception as e:  # reported to the parent, which raises it
        _send_quietly(conn, (False, str(reported(e, settings.database_url))))
        return
    if not _send_quietly(conn, (True, None)):
        engine.dispose()
        return  # the consumer died while this process started: nothing to serve
    staged: dict[int, BatchRequest] = {}
    writes: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    threading.Thread(
        target=_read, args=(conn, staged, writes), name="payscore-db-reader", daemon=True
    ).start()
    try:
        while True:
            token = writes.get()
            if token is None:
                return  # the consumer closed the pipe or died
            request = staged.get(token)
            reply: tuple[bool | None, Any]
            if request is None:  # should not happen (data precedes its write on the pipe)
                reply = (None, f"the database writer process has no batch {token}")
            else:
                try:
                    reply = (True, writer.write_staged(request))
                    staged.pop(token, None)
                except Exception as e:  # the parent raises it (anything but an outage: a bug)
                    reply = (False, reported(e, engine.url))
            try:
                conn.send(reply)
            except (EOFError, OSError):
                return
    finally:
        engine.dispose()


def reported(error: Exception, url: Any) -> ServiceUnavailable | str:
    """What the child tells the parent about a failure, in words the parent passes on as they
    are: an outage as it is, a database error in the one wording of ``database_error`` (never
    the driver's raw tuple), anything else as its type and text."""
    if isinstance(error, ServiceUnavailable):
        return error
    if isinstance(error, SQLAlchemyError):
        return database_error(error, url)
    if isinstance(error, PayscoreError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _send_quietly(conn: Connection, message: tuple[Any, ...]) -> bool:
    """Send to the parent; False, without a traceback, if it has gone (killed at start-up)."""
    try:
        conn.send(message)
    except (EOFError, OSError):
        return False
    return True


def _read(
    conn: Connection, staged: dict[int, BatchRequest], writes: queue.SimpleQueue[int | None]
) -> None:
    """The child's reader thread: stage data, drop batches, queue writes (pipe order)."""
    while True:
        try:
            kind, token, *rest = conn.recv()
        except (EOFError, OSError):
            writes.put(None)
            return
        if kind == "data":
            staged[token] = rest[0]
        elif kind == "drop":
            staged.pop(token, None)
        elif kind == "write":
            writes.put(token)


def _pickled(message: tuple[Any, ...]) -> bytes:
    return bytes(ForkingPickler.dumps(message))
