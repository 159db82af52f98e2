"""``payscore bench --recovery N,N,...``: restart-to-ready time and peak memory against stored
history, with the full replay and with a feature snapshot.

For each size, a scratch database (``scratch.scratch_database``) is seeded with N stored
payments of one topic spread over ``DAYS`` days of event time (so all of them are inside the
37 days a rebuild reads), with their offsets and labels, using the dashboard's synthetic
rows (``dashboard/seed.py``) loaded with ``LOAD DATA`` (``dashboard/bulkseed.load_tables``).
Then, each in a fresh process so that its peak RSS is its own:

1. **full**: ``FeatureState.rebuild`` with snapshots off, the consumer's behaviour without a
   snapshot; it then saves that state as the first snapshot (timed; nothing else writes in the
   benchmark, so its coverage is read afterwards; a consumer's first compaction replays the
   history in its own process instead);
2. ``AFTER`` more payments are stored (traffic after the snapshot);
3. **snapshot**: ``FeatureState.rebuild`` with snapshots on: restore, then replay the rest;
   then the consumer's next snapshot as a running consumer takes it: the keeper starts a
   compaction process (the poll loop's share, ``pause``, is timed) that restores the snapshot,
   replays the ``AFTER`` payments and saves the result (its wall time and peak RSS).

Ready time is taken two ways: from the assignment (``FeatureState.rebuild`` called, what a
rebalance waits for; the issue's goal) and from starting the child process (interpreter and
the rebuild's imports included, as a restart adds). Loading the model and joining the group
cost the same in both paths and are left out.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

from payscore.config import Settings
from payscore.core.features import RATIO_FEATURE, FeatureEngine

TOPIC = "payments"
GROUP = "payscore-recovery"
PARTITIONS = 6
DAYS = 30
AFTER = 20_000  # payments stored after the snapshot: ~5 minutes at 65 payments/s
_LOAD_ROWS = 50_000
_END = datetime(2018, 9, 1)


@dataclass(frozen=True)
class RecoveryFigures:
    """One size's measurements (seconds, MiB, bytes)."""

    stored: int
    seed_s: float
    full_ready_s: float  # from the process start
    full_rebuild_s: float  # from the assignment
    full_rss_mib: float
    full_rows: int
    first_save_s: float  # the replayed state encoded and saved as the first snapshot
    snapshot_bytes: int
    snapshot_ready_s: float
    snapshot_rebuild_s: float
    snapshot_rss_mib: float
    snapshot_rows: int
    pause_s: float  # the poll loop's share of starting the next snapshot
    compaction_s: float  # the next snapshot, built in its own process
    compaction_rss_mib: float


def stored_rows(n: int, *, start: int = 0, total: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows ``start .. n-1`` of ``total`` (default ``n``) stored payments: the dashboard's
    synthetic decisions, moved into ``DAYS`` days of event time ending at ``_END`` and given
    the topic, a partition by customer (as the producer keys) and that partition's offset."""
    from payscore.dashboard.seed import synthetic_rows

    total = total or n
    step = DAYS * 86_400 / total
    first = _END - timedelta(days=DAYS)
    # About the handbook world's density: some 30 payments a terminal and 20 a card in 30 days.
    customers, terminals = max(total // 20, 100), max(total // 30, 50)
    rows = synthetic_rows(
        n,
        now=_END,
        span_seconds=DAYS * 86_400,
        customers=customers,
        terminals=terminals,
        start=start,
    )
    engine = FeatureEngine()
    while batch := list(islice(enumerate(rows, start), _LOAD_ROWS)):
        for i, row in batch:
            part = zlib.crc32(row["customer_id"].encode()) % PARTITIONS
            row["event_time"] = first + timedelta(seconds=i * step)
            row["kafka_topic"], row["kafka_partition"] = TOPIC, part
            row["kafka_offset"] = i  # increasing within each partition: all offsets need
        yield from _with_ratios(engine, [row for _, row in batch])


def _with_ratios(engine: FeatureEngine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the amount ratio a consumer stores with each decision, computed by
    ``engine`` over the rows in order (a card's payments before these are not known)."""
    X = engine.transform_columns(
        [r["transaction_id"] for r in rows],
        [r["customer_id"] for r in rows],
        [r["terminal_id"] for r in rows],
        [float(r["amount"]) for r in rows],
        [r["event_time"].replace(tzinfo=timezone.utc).timestamp() for r in rows],
    )
    at = engine.feature_names.index(RATIO_FEATURE)
    for row, ratio in zip(rows, X[:, at].tolist(), strict=True):
        row["amount_ratio"] = ratio
    return rows


def seed(db: Any, n: int, *, start: int = 0, total: int | None = None) -> None:
    """Store rows ``start .. n-1`` with their labels (known 7 days after the payment) and
    the group's next offsets: ``_LOAD_ROWS`` at a time through ``bulkseed.load_tables``
    (``LOAD DATA`` on MySQL/MariaDB, batched INSERTs elsewhere), then the offsets."""
    from sqlalchemy import delete, insert

    from payscore.dashboard.bulkseed import load_tables
    from payscore.store.engine import begin_write
    from payscore.store.schema import consumer_offsets

    nexts: dict[int, int] = {}
    load_tables(db, _chunks(stored_rows(n, start=start, total=total), nexts))
    with db.begin() as conn:
        begin_write(conn)
        c = consumer_offsets.c
        conn.execute(delete(consumer_offsets).where(c.group_id == GROUP, c.topic == TOPIC))
        if nexts:
            conn.execute(
                insert(consumer_offsets),
                [
                    {
                        "group_id": GROUP,
                        "topic": TOPIC,
                        "kafka_partition": p,
                        "next_offset": o,
                        "updated_at": _END,
                    }
                    for p, o in sorted(nexts.items())
                ],
            )


def _chunks(
    rows: Iterator[dict[str, Any]], nexts: dict[int, int]
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The rows with their labels and label events, ``_LOAD_ROWS`` at a time; ``nexts``
    gets each partition's next offset as they go."""
    from payscore.dashboard.seed import label_for

    while batch := list(islice(rows, _LOAD_ROWS)):
        labels = []
        for row in batch:
            label = label_for(row)
            if label is not None:
                label["known_at"] = row["event_time"] + timedelta(days=7)
                labels.append(label)
            nexts[row["kafka_partition"]] = row["kafka_offset"] + 1
        events = [{**r, "recorded_at": r["known_at"]} for r in labels]
        yield {"scored_transactions": batch, "fraud_labels": labels, "label_events": events}


def run_recovery(
    settings: Settings, sizes: Sequence[int], step: Callable[[str], None]
) -> list[RecoveryFigures]:
    """Measure each size in its own scratch database (removed afterwards)."""
    from payscore.bench.scratch import scratch_database
    from payscore.store.engine import make_engine

    out = []
    for n in sizes:
        with scratch_database(settings, "recovery") as scratch:
            db = make_engine(scratch)
            try:
                step(f"{n:,} stored payments: seeding")
                started = time.monotonic()
                seed(db, n, total=n + AFTER)
                seed_s = time.monotonic() - started
                step(f"{n:,}: full replay (and a snapshot of its state)")
                full = _child(scratch, "full")
                seed(db, n + AFTER, start=n, total=n + AFTER)
                step(f"{n:,}: snapshot restore + {AFTER:,} payments after it")
                snap = _child(scratch, "snapshot")
            finally:
                db.dispose()
        out.append(
            RecoveryFigures(
                n,
                seed_s,
                full["ready_s"],
                full["rebuild_s"],
                full["rss_mib"],
                full["rows"],
                full["save_s"],
                full["bytes"],
                snap["ready_s"],
                snap["rebuild_s"],
                snap["rss_mib"],
                snap["rows"],
                snap["pause_s"],
                snap["compaction_s"],
                snap["compaction_rss_mib"],
            )
        )
        step(report_lines(out[-1:])[-1])  # each size as soon as it is measured
    return out


def parse_sizes(text: str) -> list[int]:
    """``"100000,1000000"`` as sizes; ``ValueError`` with a one-line reason otherwise."""
    parts = [p.strip().replace("_", "") for p in text.split(",")]
    if not 1 <= len(parts) <= 10 or not all(p.isdigit() for p in parts):
        raise ValueError("expected 1 to 10 comma-separated payment counts, e.g. 100000,1000000")
    sizes = [int(p) for p in parts]
    if not all(1_000 <= n <= 50_000_000 for n in sizes):
        raise ValueError("each payment count must be between 1000 and 50000000")
    return sizes


def report_lines(figures: Sequence[RecoveryFigures]) -> list[str]:
    """The figures as a Markdown table (what docs/benchmarks.md records)."""
    lines = [
        "| stored payments | seed | full replay: ready after assignment / process start, "
        f"peak RSS | snapshot + {AFTER:,} after it: ready after assignment / process start, "
        "peak RSS | ready ratio (after assignment) "
        "| first snapshot saved, size "
        f"| next snapshot (+{AFTER:,}): compaction, its peak RSS, poll-loop pause |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        lines.append(
            f"| {f.stored:,} | {f.seed_s:.0f} s "
            f"| {f.full_rebuild_s:.1f} / {f.full_ready_s:.1f} s, {f.full_rss_mib:,.0f} MiB "
            f"| {f.snapshot_rebuild_s:.1f} / {f.snapshot_ready_s:.1f} s, "
            f"{f.snapshot_rss_mib:,.0f} MiB "
            f"| {f.snapshot_rebuild_s / f.full_rebuild_s:.2f} "
            f"| {f.first_save_s:.1f} s, {f.snapshot_bytes / 2**20:,.0f} MiB "
            f"| {f.compaction_s:.1f} s, {f.compaction_rss_mib:,.0f} MiB, "
            f"{f.pause_s * 1000:.0f} ms |"
        )
    return lines


def _child(settings: Settings, mode: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PAYSCORE_DATABASE_URL"] = settings.database_url
    if settings.database_password is not None:  # a secret: by environment, never argv
        env["PAYSCORE_DATABASE_PASSWORD"] = settings.database_password.get_secret_value()
    spawned = time.time()  # wall clock: the child's "ready" is compared with it
    proc = subprocess.run(  # noqa: S603 (this interpreter, this module, a fixed mode)
        [sys.executable, "-m", "payscore.bench.recovery", mode],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        from payscore.errors import PayscoreError

        raise PayscoreError(f"recovery {mode} run failed: {proc.stderr.strip()[-500:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["ready_s"] = out.pop("ready_at") - spawned
    return out


def _measure(mode: str) -> dict[str, Any]:
    """In the child: rebuild the state as a consumer owning every partition would."""
    from payscore.config import load_settings
    from payscore.core.features import FeatureEngine
    from payscore.store.engine import make_engine
    from payscore.stream.rebuild import FeatureState
    from payscore.stream.snapshots import SnapshotKeeper

    settings = load_settings(environ={k: v for k, v in os.environ.items() if "DATABASE" in k})
    db = make_engine(settings.settings)
    owned = set(range(PARTITIONS))
    max_bytes = settings.settings.snapshot_max_bytes
    keeper = SnapshotKeeper(db, GROUP, TOPIC, 1.0, max_bytes, settle_s=0.0)
    state = FeatureState(db, TOPIC, FeatureEngine, lambda: owned, keeper)
    if mode == "full":
        state.snapshots = None
    assigned = time.monotonic()
    engine = state.rebuild()
    out: dict[str, Any] = {
        "ready_at": time.time(),
        "rebuild_s": time.monotonic() - assigned,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": state.rebuilt_rows,
        "customers": engine.customer_count,
        "terminals": engine.terminal_count,
    }
    if mode == "full":
        started = time.monotonic()
        out["bytes"] = _save_first(db, engine, max_bytes)
        out["save_s"] = time.monotonic() - started
    else:
        started = time.monotonic()
        state.maybe_snapshot(engine, now=True)
        out["pause_s"] = time.monotonic() - started
        keeper.wait()  # the compaction runs in a process of its own: its whole time
        out["compaction_s"] = time.monotonic() - started
        out["compaction_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    db.dispose()
    return out


def _save_first(db: Any, engine: Any, max_bytes: int) -> int:
    """The full replay's state saved as the first snapshot, with its coverage read from the
    database and each customer's partition as ``stored_rows`` gives it (nothing else writes)."""
    from payscore.store import snapshots, state
    from payscore.store.writer import stored_offsets
    from payscore.stream.compactor import save_state
    from payscore.stream.rebuild import EXPIRY_LATENESS
    from payscore.stream.snapshots import CompactionJob, Covers

    covers = Covers(
        stored_offsets(db, GROUP, TOPIC), snapshots.newest_row_id(db), state.label_cursor(db)
    )
    engine.expire(engine.newest_event_time - EXPIRY_LATENESS)  # as a compaction does
    customers = engine.columns().customer_keys
    partitions = {c: zlib.crc32(c.encode()) % PARTITIONS for c in customers}
    job = CompactionJob(
        GROUP, TOPIC, engine.velocity_windows, engine.label_delay_days, max_bytes, covers.max_id
    )
    return int(save_state(db, job, engine, partitions, covers)["bytes"])


def restore_cost(n: int) -> dict[str, float]:
    """The restore alone, at a state of ``n`` payments: a snapshot of ``n`` payments of the
    benchmark's density (all in the windows) built directly, not replayed, then decoded and
    restored in this process, whole and for one partition of ``PARTITIONS``. Seconds, MiB.
    (``python -m payscore.bench.recovery restore-cost N``: no database; the piece of
    ``snapshot`` ready time that grows with the state.)"""
    import gc

    import numpy as np

    from payscore.core.features import StateColumns
    from payscore.stream.snapshot_format import encode, quiet_collector
    from payscore.stream.snapshots import restore_engine

    rng = np.random.default_rng(7)
    customers, terminals = max(n // 20, 100), max(n // 30, 50)
    first = (_END - timedelta(days=DAYS)).timestamp()
    times = np.sort(rng.uniform(first, first + DAYS * 86_400, n))
    cust, term = rng.integers(0, customers, n), rng.integers(0, terminals, n)
    amounts = np.round(rng.gamma(2.0, 30.0, n), 2)
    with quiet_collector():
        by_customer = np.argsort(cust, kind="stable")
        by_terminal = np.argsort(term, kind="stable")
        ckeys, ccounts = np.unique(cust, return_counts=True)
        tkeys, tcounts = np.unique(term, return_counts=True)
        cols = StateColumns(
            velocity_windows=(60, 3600),
            label_delay_days=7,
            customer_keys=[f"C{k:07d}" for k in ckeys.tolist()],
            customer_counts=ccounts,
            customer_times=times[by_customer],
            customer_amounts=amounts[by_customer],
            terminal_keys=[f"T{k:07d}" for k in tkeys.tolist()],
            terminal_counts=tcounts,
            terminal_times=times[by_terminal],
            terminal_txids=[f"tx-{i:09d}" for i in by_terminal.tolist()],
            terminal_customers=[f"C{c:07d}" for c in cust[by_terminal].tolist()],
            terminal_amounts=amounts[by_terminal],
            terminal_fraud_at=np.full(n, np.inf),
            terminal_ratios=np.ones(n),
            pending_keys=[],
            pending_fraud=[],
            pending_known=[],
        )
        partitions = {c: zlib.crc32(c.encode()) % PARTITIONS for c in cols.customer_keys}
        data = encode(cols, partitions)
    del cols, partitions
    gc.collect()
    out = {"payments": n, "mib": len(data) / 2**20}
    for name, keep in (("all", None), ("one_partition", {0})):
        started = time.monotonic()
        engine, _ = restore_engine(data, keep)
        out[f"{name}_s"] = time.monotonic() - started
        del engine
        gc.collect()
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


if __name__ == "__main__":
    if sys.argv[1] == "restore-cost":
        print(json.dumps(restore_cost(int(sys.argv[2]))))
    else:
        print(json.dumps(_measure(sys.argv[1])))
