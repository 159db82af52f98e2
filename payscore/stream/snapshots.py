"""Feature-state snapshots: the whole topic's state as of a stored row id, compacted in the
background and restored on assignment, whatever partitions the consumer is given.

A snapshot holds the state a replay of every stored payment of the topic with an id up to
``max_id`` builds (plus the labels up to ``label_cursor``), with each customer tagged by its
partition. It is not copied from the running engine: a compaction (``stream/compactor.py``), in
a process of its own, restores the previous snapshot, replays the payments and labels stored
since, drops what no window reads any more, and saves the result. So the poll loop never
stops for a copy of the state, and a snapshot depends only on what the database committed.

On assignment ``SnapshotKeeper.restore`` decodes only the assigned partitions' customers (and
every terminal, which all partitions feed) and hands the engine back with ``max_id`` as the
cursor both for our partitions and for the others (stream/rebuild.py replays what came after).
Any partition set is served by the same snapshot: a rebalance needs no full replay.

The bytes are a plain format (``stream/snapshot_format.py``); anything that does not add up
(sizes, counts, version, engine settings) raises ``SnapshotError`` and the consumer falls back
to the full replay.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from payscore.core.features import FeatureEngine
from payscore.errors import PayscoreError
from payscore.store import snapshots as store
from payscore.store.writer import stored_offsets
from payscore.stream.snapshot_format import (
    FORMAT_VERSION,
    SnapshotError,
    decode,
    encode,
    quiet_collector,
)

__all__ = ["FORMAT_VERSION", "SnapshotError", "SnapshotKeeper", "decode", "encode"]

log = logging.getLogger(__name__)

#: How long a compaction waits after reading the newest row id before it reads the rows up to
#: it: a writer's transaction that took ids below it has committed or rolled back by then
#: (InnoDB gives up a lock wait after 50 s), so no payment can later appear below a
#: snapshot's ``max_id``. Capped by the interval.
SETTLE_S = 60.0


# ----------------------------------------------------------------------------- keeper


@dataclass(frozen=True)
class Covers:
    """What a snapshot covers: every stored payment of the topic with an id up to ``max_id``
    (their newest offset + 1 per partition in ``offsets``) and label events up to
    ``label_cursor``."""

    offsets: dict[int, int]
    max_id: int
    label_cursor: int

    @property
    def others_cursor(self) -> int:
        """Other partitions' payments are covered up to the same id as ours."""
        return self.max_id

    def as_json(self) -> dict[str, Any]:
        return {
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "max_id": self.max_id,
            "label_cursor": self.label_cursor,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Covers:
        try:
            return cls(
                {int(p): int(o) for p, o in data["offsets"].items()},
                int(data["max_id"]),
                int(data["label_cursor"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SnapshotError(f"snapshot coverage is malformed: {e!r}") from e


@dataclass
class Restored:
    engine: FeatureEngine
    covers: Covers
    snapshot_id: int


@dataclass(frozen=True)
class CompactionJob:
    """What one compaction is asked to cover (see ``stream/compactor.py``)."""

    group: str
    topic: str
    velocity_windows: tuple[int, ...]
    label_delay_days: int
    max_bytes: int
    upto_id: int
    settle_s: float = 0.0  # waited before reading the rows up to ``upto_id`` (SETTLE_S)


def restore_engine(
    data: bytes | bytearray, keep: Collection[int] | None
) -> tuple[FeatureEngine, dict[str, int]]:
    """An engine from snapshot bytes (only ``keep``'s customers, if given), and the partition
    of each customer it holds; ``SnapshotError`` if the bytes do not add up."""
    with quiet_collector():
        try:
            decoded = decode(data, keep)
            return FeatureEngine.from_columns(decoded.columns), decoded.partitions
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"unreadable state: {e!r}") from e


class SnapshotKeeper:
    """Starts a compaction at most every ``interval_s`` and restores the newest snapshot on
    assignment. The compaction runs in a spawned process (``in_thread``: a thread, for tests
    and the benchmark); the poll loop only reads the newest row id and starts it."""

    def __init__(
        self,
        db: Engine,
        group: str,
        topic: str,
        interval_s: float,
        max_bytes: int,
        drain: Callable[[], bool] | None = None,
        *,
        in_thread: bool = False,
        settle_s: float | None = None,
    ) -> None:
        self.db = db
        self.group = group
        self.topic = topic
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        # Not called: a compaction reads only committed rows, so nothing needs draining
        # (FeatureState.for_consumer still hands the consumer's drain in).
        del drain
        self.in_thread = in_thread
        self.settle_s = min(SETTLE_S, interval_s) if settle_s is None else settle_s
        self._last = time.monotonic()
        self._covered = 0  # max_id of the last compaction started
        self._job: Any = None  # the running compaction: a Process or a Thread
        self._results: Any = None  # the process's end of its result pipe
        self._thread_result: tuple[bool, Any] | None = None
        self.last_size = 0  # bytes of the last snapshot written (logs, benchmark)
        self.last_pause_s = 0.0  # the poll loop's share of the last take
        self.last_compaction_s = 0.0  # wall time of the last compaction (benchmark)

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.interval_s

    def take(
        self, engine: FeatureEngine, owned: Collection[int], label_cursor: int, others_cursor: int
    ) -> int:
        """Start a compaction up to the newest row id (it waits ``settle_s`` before reading),
        unless one is running; returns ``others_cursor`` unchanged (a compaction does not read the
        running engine, only its feature settings). Only the member that owns partition 0
        compacts: the snapshot covers every partition, so one compaction serves the group
        (``label_cursor`` is not needed either: the compaction reads the labels itself)."""
        del label_cursor
        started = self._last = time.monotonic()
        self._collect()
        if self._job is not None or 0 not in owned:
            return others_cursor
        upto = store.newest_row_id(self.db)
        if upto > self._covered:
            self._start(engine, upto, started)
        self.last_pause_s = time.monotonic() - started
        return others_cursor

    def _start(self, engine: FeatureEngine, upto: int, started: float) -> None:
        from payscore.stream import compactor  # imports stream/rebuild.py, which imports us

        job = CompactionJob(
            self.group,
            self.topic,
            engine.velocity_windows,
            engine.label_delay_days,
            self.max_bytes,
            upto,
            self.settle_s,
        )
        self._covered = upto
        self._started = started
        if self.in_thread:
            self._thread_result = None

            def run() -> None:
                try:
                    self._thread_result = (True, compactor.compact(self.db, job))
                except (SnapshotError, PayscoreError) as e:
                    self._thread_result = (False, str(e))

            self._job = threading.Thread(target=run, name="feature-compaction", daemon=True)
        else:
            ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads
            self._results, child = ctx.Pipe(duplex=False)
            url = self.db.url.render_as_string(hide_password=False)  # to the child, not argv
            self._job = ctx.Process(
                target=compactor.child_main,
                args=(url, job, child),
                name="payscore-feature-compaction",
                # Not a daemon: a consumer that stops lets the snapshot in hand be saved (its
                # exit waits for it); killed, the process finishes on its own or is rolled back.
                daemon=False,
            )
        self._job.start()

    def _collect(self, wait: bool = False) -> None:
        """Log a finished compaction's outcome and forget it (``wait``: until it finishes)."""
        job = self._job
        if job is None:
            return
        if wait:
            job.join()
        if job.is_alive():
            return
        self._job = None
        self.last_compaction_s = time.monotonic() - self._started
        ok: bool
        result: Any  # what compactor.compact returned (a dict or None), or why it failed
        if self.in_thread:
            ok, result = self._thread_result or (False, "the compaction thread died")
        else:
            try:
                if self._results.poll():
                    ok, result = self._results.recv()
                else:
                    ok, result = False, f"the compaction process exited with code {job.exitcode}"
            except (EOFError, OSError) as e:
                ok, result = False, f"no result from the compaction process ({e!r})"
            self._results.close()
        if not ok:
            self._covered = 0  # the next take tries again
            log.warning("feature snapshot not written: %s", result)
        elif result is not None:
            self.last_size = result["bytes"]
            log.info(
                "feature snapshot %d written in the background: %d customers, %d terminals, "
                "%d bytes, %d stored payments compacted, in %.1f s",
                result["snapshot_id"],
                result["customers"],
                result["terminals"],
                result["bytes"],
                result["rows"],
                self.last_compaction_s,
            )

    def wait(self) -> None:
        """Until the running compaction (if any) has finished, and its outcome logged."""
        self._collect(wait=True)

    def restore(self, owned: Collection[int], fresh: FeatureEngine) -> Restored:
        """The newest usable snapshot as an engine holding the ``owned`` partitions'
        customers; ``SnapshotError`` says why there is none (the caller replays in full)."""
        try:
            stored = store.load_newest(self.db, self.group, self.topic, self.max_bytes)
        except ValueError as e:
            raise SnapshotError(str(e)) from e
        if stored is None:
            raise SnapshotError("none stored for this topic")
        if stored.format_version != FORMAT_VERSION:
            raise SnapshotError(f"snapshot {stored.id} has format {stored.format_version}")
        covers = Covers.from_json(stored.covers)
        offsets = stored_offsets(self.db, self.group, self.topic)
        ahead = sorted(p for p, o in covers.offsets.items() if o > offsets.get(p, -1))
        if ahead:
            raise SnapshotError(f"snapshot {stored.id} is ahead of the stored offsets of {ahead}")
        engine, _ = restore_engine(stored.data, owned)
        if (engine.velocity_windows, engine.label_delay_days) != (
            fresh.velocity_windows,
            fresh.label_delay_days,
        ):
            raise SnapshotError(f"snapshot {stored.id} was taken with other feature settings")
        return Restored(engine, covers, stored.id)
