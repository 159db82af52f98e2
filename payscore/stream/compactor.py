"""Feature-state compaction: the topic's state as of a stored row id, off the poll loop.

The previous snapshot (or, without one, a fresh engine over the stored history) plus the labels
and payments stored since, replayed in event-time order through the same ``FeatureEngine``;
then what no window can read any more is dropped (as the consumer's daily expiry does) and the
result saved as the next snapshot (``stream/snapshots.py`` has the format and the restore).
Work and memory grow with the state held (the active customers and terminals) and the payments
since the last snapshot, not with the stored history. A consumer runs it in a spawned process
(``child_main``), so it costs the poll loop nothing but a second core's time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine

from payscore.core.features import FeatureEngine
from payscore.errors import PayscoreError
from payscore.store import snapshots as store
from payscore.store import state
from payscore.store.writer import stored_offsets, utcnow
from payscore.stream.rebuild import EXPIRY_LATENESS
from payscore.stream.snapshot_format import FORMAT_VERSION, SnapshotError, encode, quiet_collector
from payscore.stream.snapshots import CompactionJob, Covers, restore_engine

log = logging.getLogger(__name__)


def compact(db: Engine, job: CompactionJob) -> dict[str, Any] | None:
    """Save the snapshot covering the stored payments up to ``job.upto_id``; None when the
    newest snapshot already does. Returns what was written (for the log and the benchmark)."""
    time.sleep(job.settle_s)  # transactions holding ids up to upto_id commit meanwhile
    latest = state.latest_event_time(db, job.topic)
    upto = min(job.upto_id, store.newest_row_id(db))  # never cover ids not yet given out
    if latest is None:
        return None
    with quiet_collector():
        start = _previous(db, job)
        if start is not None and start[2].max_id >= upto:
            return None
        delay = job.label_delay_days
        # The rebuild's reach, and a label delay more: terminals are trimmed with that slack.
        since = state.history_start(latest, delay) - timedelta(days=delay)
        if start is None:
            engine = FeatureEngine(job.velocity_windows, delay)
            partitions: dict[str, int] = {}
            offsets: dict[int, int] = {}
            after = 0
            label_cursor = state.label_cursor(db)  # first: a label stored meanwhile is re-read
            engine.add_labels(state.load_labels(db, known_after=since))
        else:
            engine, partitions, covers = start
            offsets, after = dict(covers.offsets), covers.max_id
            labels, label_cursor = state.labels_after(db, covers.label_cursor)
            engine.add_labels(labels)
        rows = store.read_payments(db, job.topic, since, after, upto)
        for part in state.iter_chunks(rows):
            engine.transform_columns(
                rows.transaction_ids[part],
                rows.customer_ids[part],
                rows.terminal_ids[part],
                rows.amounts[part],
                rows.times[part],
                rows.ratios[part],
            )
        for cid, p, o in zip(rows.customer_ids, rows.partitions, rows.offsets, strict=True):
            if p is not None and p >= 0:
                partitions[cid] = p
                if o >= offsets.get(p, 0):
                    offsets[p] = o + 1
        newest = engine.newest_event_time
        if newest is not None:
            engine.expire(newest - EXPIRY_LATENESS)
        covers = Covers(offsets, upto, label_cursor)
        written = save_state(db, job, engine, partitions, covers)
    written["rows"] = len(rows)
    return written


def save_state(
    db: Engine,
    job: CompactionJob,
    engine: FeatureEngine,
    partitions: Mapping[str, int],
    covers: Covers,
) -> dict[str, Any]:
    """Encode ``engine`` (customers tagged with ``partitions``) and save it as covering
    ``covers``. The compaction's last step; the benchmark also saves a replayed state so."""
    cols = engine.columns()
    data = encode(cols, partitions)
    if len(data) > job.max_bytes:
        raise SnapshotError(f"{len(data)} bytes, over snapshot_max_bytes {job.max_bytes}")
    snap_id = store.save(db, job.group, job.topic, FORMAT_VERSION, covers.as_json(), data, utcnow())
    return {
        "snapshot_id": snap_id,
        "bytes": len(data),
        "customers": len(cols.customer_keys),
        "terminals": len(cols.terminal_keys),
    }


def _previous(
    db: Engine, job: CompactionJob
) -> tuple[FeatureEngine, dict[str, int], Covers] | None:
    """The newest snapshot to build on, or None (none, or unusable: said in the log)."""
    try:
        stored = store.load_newest(db, job.group, job.topic, job.max_bytes)
        if stored is None:
            return None
        if stored.format_version != FORMAT_VERSION:
            raise SnapshotError(f"format {stored.format_version}")
        covers = Covers.from_json(stored.covers)
        offsets = stored_offsets(db, job.group, job.topic)
        if any(o > offsets.get(p, -1) for p, o in covers.offsets.items()):
            raise SnapshotError(f"snapshot {stored.id} is ahead of the stored offsets")
        engine, partitions = restore_engine(stored.data, None)
    except (SnapshotError, ValueError) as e:
        log.warning("feature snapshot not built on (%s): compacting the stored history", e)
        return None
    if (engine.velocity_windows, engine.label_delay_days) != (
        job.velocity_windows,
        job.label_delay_days,
    ):
        log.info("feature snapshot taken with other feature settings: compacting afresh")
        return None
    return engine, partitions, covers


def child_main(url: str, job: CompactionJob, results: Connection) -> None:
    """The compaction process: one engine, one compaction, the outcome sent back."""
    import signal

    from payscore.config import Settings
    from payscore.store.engine import make_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the consumer stops it (daemon process)
    started = time.monotonic()
    outcome: tuple[bool, Any]
    try:
        db = make_engine(Settings.model_validate({"database_url": url}))
        try:
            outcome = (True, compact(db, job))
        finally:
            db.dispose()
    except (SnapshotError, PayscoreError) as e:
        outcome = (False, str(e))
    except Exception as e:  # reported to the consumer, which logs it and tries again later
        outcome = (False, f"compaction failed after {time.monotonic() - started:.1f} s: {e!r}")
    try:
        results.send(outcome)
    except OSError:
        pass  # the consumer is gone
    results.close()
