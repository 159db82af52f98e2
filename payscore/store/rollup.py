"""Per-minute and per-hour decision counts (``decision_rollup``), kept exact by the writers.

Every writer of ``scored_transactions`` adds the rows it inserted with :func:`add_decisions`
in the same transaction, so the rollup always equals a GROUP BY over the table. A batch is
summed in Python first (one upsert row per grain and bucket) and applied as increments,
which commute: concurrent writers never overwrite each other's counts.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from payscore.store.engine import begin_write
from payscore.store.schema import (
    ROLLUP_GRAINS,
    ROLLUP_SCORE_BINS,
    decision_rollup,
    scored_transactions,
)
from payscore.store.statements import increment_upsert

STATUS_COLUMNS = {"APPROVED": "approved", "REVIEW": "review", "DECLINED": "declined"}
SCORE_COLUMNS = tuple(f"score_{i:02d}" for i in range(ROLLUP_SCORE_BINS))
COUNT_COLUMNS = ("decisions", *STATUS_COLUMNS.values(), *SCORE_COLUMNS)
_REBUILD_CHUNK = 20_000


def score_bin(score: float, bins: int = ROLLUP_SCORE_BINS) -> int:
    """The histogram bin of a score in [0, 1], as SQL's FLOOR(score * bins); 1.0 joins the top."""
    return min(max(math.floor(float(score) * bins), 0), bins - 1)


def truncate(when: datetime, grain: int) -> datetime:
    """The start of the minute (60) or hour (3600) holding ``when``."""
    if grain == 60:
        return when.replace(second=0, microsecond=0)
    if grain == 3600:
        return when.replace(minute=0, second=0, microsecond=0)
    raise ValueError(f"unsupported grain {grain}")


def summarise(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rollup increments for these decision rows: one dict per (grain, bucket), sorted.

    Sorted so every writer touches rollup rows in the same order (no lock-order deadlocks).
    """
    # Count distinct (time, status, score bin) first: a consumer's batch shares one scored_at,
    # so the per-row work is one tuple and one dict update, and buckets are cut once per time.
    counts = Counter((row["scored_at"], row["status"], score_bin(row["score"])) for row in rows)
    sums: dict[tuple[int, datetime], dict[str, Any]] = {}
    buckets: dict[datetime, list[tuple[int, datetime]]] = {}
    for (scored_at, status_name, score), n in counts.items():
        keys = buckets.get(scored_at)
        if keys is None:
            keys = buckets[scored_at] = [(g, truncate(scored_at, g)) for g in ROLLUP_GRAINS]
        status = STATUS_COLUMNS.get(status_name)
        for key in keys:
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = dict.fromkeys(COUNT_COLUMNS, 0)
                acc["grain"], acc["bucket"] = key
            acc["decisions"] += n
            if status is not None:
                acc[status] += n
            acc[SCORE_COLUMNS[score]] += n
    return [sums[k] for k in sorted(sums)]


def add_decisions(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Count inserted decision rows into the rollup (inside the caller's transaction).

    Returns the number of rollup rows touched.
    """
    increments = summarise(rows)
    if not increments:
        return 0
    conn.execute(_upsert(conn.dialect.name), increments)
    return len(increments)


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT of new buckets that adds to existing ones: col = col + the new value.

    Built once per dialect: building it (and its cache key) per batch cost more than the
    statement itself.
    """
    return increment_upsert(dialect, decision_rollup, ("grain", "bucket"), COUNT_COLUMNS)


def rebuild(engine: Engine) -> int:
    """Recompute the whole rollup from ``scored_transactions`` in one transaction.

    For databases that held decisions before the rollup existed, or were written around the
    writer. Streams the table in id order; returns the number of decisions counted.
    """
    st = scored_transactions.c
    counted = 0
    with engine.begin() as conn:
        begin_write(conn)  # SQLite too: a failed rebuild leaves the old rollup
        conn.execute(delete(decision_rollup))
        totals: dict[tuple[int, datetime], dict[str, Any]] = {}
        last_id = 0
        while True:
            chunk = conn.execute(
                select(st.id, st.scored_at, st.status, st.score)
                .where(st.id > last_id)
                .order_by(st.id)
                .limit(_REBUILD_CHUNK)
            ).all()
            if not chunk:
                break
            last_id = chunk[-1].id
            counted += len(chunk)
            for inc in summarise(dict(r._mapping) for r in chunk):
                key = (inc["grain"], inc["bucket"])
                acc = totals.setdefault(key, inc)
                if acc is not inc:
                    for c in COUNT_COLUMNS:
                        acc[c] += inc[c]
        rows = [totals[k] for k in sorted(totals)]
        for i in range(0, len(rows), _REBUILD_CHUNK):
            conn.execute(insert(decision_rollup), rows[i : i + _REBUILD_CHUNK])
    return counted
