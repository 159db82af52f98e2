"""Seeding millions of synthetic decisions fast: ``LOAD DATA LOCAL INFILE`` from generated files.

The rows are those of :mod:`payscore.dashboard.seed` (same generator, labels and dead letters);
only the way in differs. On MySQL/MariaDB each chunk of decisions is written to a tab-separated
file and loaded in one statement, with its labels, label events and rollup counts, in one
transaction. Other databases fall back to :func:`seed.seed_database`'s batched INSERTs.

:func:`top_up` extends an already seeded table up to the present at the table's own rate, so a
database seeded yesterday can be measured again with a full "Last hour" without reseeding.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, insert, select

from payscore.dashboard.figures import utc_now
from payscore.dashboard.seed import (
    SeedSummary,
    _dead_letter,
    label_for,
    seed_database,
    synthetic_model,
    synthetic_rows,
)
from payscore.store.labels import recount
from payscore.store.rollup import add_decisions
from payscore.store.schema import dead_letters, metadata, model_versions, scored_transactions

CHUNK = 250_000
_SAFE_PATH = re.compile(r"[\w./-]+")


def seed_fast(
    engine: Engine,
    n: int,
    *,
    now: datetime | None = None,
    span_seconds: float,
    seed: int = 0,
    dead_letter_every: int = 500,
    with_model: bool = True,
    chunk: int = CHUNK,
    progress: Callable[[int], None] = lambda _done: None,
) -> SeedSummary:
    """Insert ``n`` synthetic decisions ending at ``now``; bulk-loaded on MySQL/MariaDB."""
    now = now or utc_now()
    if engine.dialect.name not in {"mysql", "mariadb"}:
        return seed_database(
            engine,
            n,
            now=now,
            span_seconds=span_seconds,
            seed=seed,
            dead_letter_every=dead_letter_every,
        )
    loader = _loading_engine(engine)
    totals = [0, 0, 0]
    try:
        with tempfile.TemporaryDirectory(prefix="payscore-seed-") as tmp:
            rows: list[dict[str, Any]] = []
            for i, row in enumerate(
                synthetic_rows(n, now=now, span_seconds=span_seconds, seed=seed)
            ):
                rows.append(row)
                if len(rows) >= chunk or i == n - 1:
                    first = i + 1 - len(rows)
                    _load_chunk(loader, tmp, rows, first, seed, dead_letter_every, totals)
                    rows = []
                    progress(i + 1)
        if with_model:
            with engine.begin() as conn:
                conn.execute(insert(model_versions).values(**synthetic_model(now, seed)))
    finally:
        loader.dispose()
    return SeedSummary(*totals)


def top_up(
    engine: Engine, *, now: datetime | None = None, progress: Callable[[int], None] = print
) -> int:
    """Add decisions from the newest one up to ``now`` at the table's average rate.

    Returns how many were added (0 when the table is empty or already current). The new rows
    carry the seed ``int(newest timestamp)``, so their ids never meet earlier ones.
    """
    now = now or utc_now()
    st = scored_transactions.c
    with engine.connect() as conn:
        count, oldest, newest = conn.execute(
            select(func.count(), func.min(st.scored_at), func.max(st.scored_at))
        ).one()
    if not count or newest is None or oldest is None or newest >= now or count < 2:
        return 0
    rate = (count - 1) / max((newest - oldest).total_seconds(), 1.0)
    gap = (now - newest).total_seconds()
    n = int(gap * rate)
    if n < 1:
        return 0
    seed_fast(
        engine,
        n,
        now=now,
        span_seconds=gap,
        seed=int(newest.timestamp()),
        with_model=False,
        progress=progress,
    )
    return n


def load_tables(engine: Engine, chunks: Iterable[dict[str, list[dict[str, Any]]]]) -> int:
    """Rows of any tables, one transaction per chunk; returns the rows loaded.

    Each chunk maps table names to rows (dicts with the same keys, the table's column names,
    values without tabs or newlines). On MySQL/MariaDB every table of a chunk goes in with one
    ``LOAD DATA LOCAL INFILE``, as :func:`seed_fast` loads; elsewhere with batched INSERTs.
    """
    done = 0
    if engine.dialect.name not in {"mysql", "mariadb"}:
        for tables in chunks:
            with engine.begin() as conn:
                for table, rows in tables.items():
                    if rows:
                        conn.execute(insert(metadata.tables[table]), rows)
                    done += len(rows)
        return done
    loader = _loading_engine(engine)
    try:
        with tempfile.TemporaryDirectory(prefix="payscore-load-") as tmp:
            for tables in chunks:
                with loader.begin() as conn:
                    conn.exec_driver_sql("SET SESSION unique_checks = 0")
                    for table, rows in tables.items():
                        _load(conn, tmp, table, rows)
                        done += len(rows)
                    conn.exec_driver_sql("SET SESSION unique_checks = 1")
    finally:
        loader.dispose()
    return done


def _loading_engine(engine: Engine) -> Engine:
    """A second engine on the same database whose connections may send local files."""
    return create_engine(
        engine.url,
        connect_args={"charset": "utf8mb4", "local_infile": 1, "connect_timeout": 10},
    )


def _load_chunk(
    loader: Engine,
    tmp: str,
    rows: list[dict[str, Any]],
    first: int,
    seed: int,
    dead_letter_every: int,
    totals: list[int],
) -> None:
    labels = [lab for lab in map(label_for, rows) if lab is not None]
    dead = [
        _dead_letter(seed, first + k, row["scored_at"])
        for k, row in enumerate(rows)
        if dead_letter_every and (first + k) % dead_letter_every == 0
    ]
    events = [{**lab, "recorded_at": lab["known_at"]} for lab in labels]
    with loader.begin() as conn:
        conn.exec_driver_sql("SET SESSION unique_checks = 0")
        _load(conn, tmp, "scored_transactions", rows)
        add_decisions(conn, rows)  # the rollup, as DecisionWriter keeps it
        _load(conn, tmp, "fraud_labels", labels)
        recount(conn, [lab["transaction_id"] for lab in labels])  # the rollup's fraud counts
        _load(conn, tmp, "label_events", events)
        if dead:
            conn.execute(insert(dead_letters), dead)
        conn.exec_driver_sql("SET SESSION unique_checks = 1")
    totals[0] += len(rows)
    totals[1] += len(labels)
    totals[2] += len(dead)


def _cell(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return str(value)


def _load(conn: Connection, tmp: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts with the same keys, the table's column names) into ``table`` through a
    tab-separated file; no quoting, as the synthetic values hold no tabs or newlines."""
    if not rows:
        return
    columns = tuple(rows[0])
    path = os.path.join(tmp, f"{table}.tsv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        out.writerows([_cell(row[c]) for c in columns] for row in rows)
    # LOAD DATA takes the file name as a literal, not a parameter: only our own temp paths.
    if not _SAFE_PATH.fullmatch(path):
        raise ValueError(f"unexpected characters in {path!r}")
    conn.exec_driver_sql(
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} "
        "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
        f"LINES TERMINATED BY '\\n' ({', '.join(columns)})"
    )
