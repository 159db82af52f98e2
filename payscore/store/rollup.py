"""Per-minute and per-hour decision counts (``decision_rollup``), kept exact by the writers.

Every writer of ``scored_transactions`` adds the rows it inserted with :func:`add_decisions`
in the same transaction, so the rollup always equals a GROUP BY over the table. A batch is
summed in Python first (one upsert row per grain and bucket) and applied as increments,
which commute: concurrent writers never overwrite each other's counts.

``frauds`` counts the bucket's decisions whose counting label is fraud, by decision time,
whenever the label came. Each label row says whether it is counted (``fraud_labels.counted``):
a decision inserted after its fraud label claims the label here (:func:`add_decisions`); a
label written or changed after its decision is counted by the label writer
(``store.labels.recount``, which reads the decision with a locking read, so a decision being
inserted meanwhile is waited for rather than missed). Either way exactly once.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    exists,
    false,
    insert,
    or_,
    select,
    true,
    update,
)

from payscore.store.engine import begin_write
from payscore.store.schema import (
    ROLLUP_GRAINS,
    ROLLUP_SCORE_BINS,
    decision_rollup,
    fraud_labels,
    scored_transactions,
)
from payscore.store.statements import increment_upsert

STATUS_COLUMNS = {"APPROVED": "approved", "REVIEW": "review", "DECLINED": "declined"}
SCORE_COLUMNS = tuple(f"score_{i:02d}" for i in range(ROLLUP_SCORE_BINS))
COUNT_COLUMNS = ("decisions", *STATUS_COLUMNS.values(), *SCORE_COLUMNS)
FRAUD_COLUMN = "frauds"
_ALL_COLUMNS = (*COUNT_COLUMNS, FRAUD_COLUMN)
_REBUILD_CHUNK = 20_000
_IN_CHUNK = 500  # ids per IN (...) list
_fl = fraud_labels.c
_st = scored_transactions.c
_NOT_COUNTED = or_(_fl.counted.is_(None), _fl.counted == false())


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


def summarise(
    rows: Iterable[Mapping[str, Any]], frauds: Container[str] = ()
) -> list[dict[str, Any]]:
    """Rollup increments for these decision rows: one dict per (grain, bucket), sorted.

    ``frauds``: transaction ids among the rows to count as fraud. Sorted so every writer
    touches rollup rows in the same order (no lock-order deadlocks).
    """
    # Count distinct (time, status, score bin) first: a consumer's batch shares one scored_at,
    # so the per-row work is one tuple and one dict update, and buckets are cut once per time.
    counts = Counter(
        (row["scored_at"], row["status"], score_bin(row["score"]), row["transaction_id"] in frauds)
        if frauds
        else (row["scored_at"], row["status"], score_bin(row["score"]), False)
        for row in rows
    )
    sums: dict[tuple[int, datetime], dict[str, Any]] = {}
    buckets: dict[datetime, list[tuple[int, datetime]]] = {}
    for (scored_at, status_name, score, fraud), n in counts.items():
        keys = buckets.get(scored_at)
        if keys is None:
            keys = buckets[scored_at] = [(g, truncate(scored_at, g)) for g in ROLLUP_GRAINS]
        status = STATUS_COLUMNS.get(status_name)
        for key in keys:
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = dict.fromkeys(_ALL_COLUMNS, 0)
                acc["grain"], acc["bucket"] = key
            acc["decisions"] += n
            if status is not None:
                acc[status] += n
            acc[SCORE_COLUMNS[score]] += n
            if fraud:
                acc[FRAUD_COLUMN] += n
    return [sums[k] for k in sorted(sums)]


def fraud_increments(changes: Iterable[tuple[datetime, int]]) -> list[dict[str, Any]]:
    """Rollup increments that only move ``frauds``: (decision time, +1 or -1) each, sorted."""
    sums: dict[tuple[int, datetime], dict[str, Any]] = {}
    for scored_at, delta in changes:
        for grain in ROLLUP_GRAINS:
            key = (grain, truncate(scored_at, grain))
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = dict.fromkeys(_ALL_COLUMNS, 0)
                acc["grain"], acc["bucket"] = key
            acc[FRAUD_COLUMN] += delta
    return [sums[k] for k in sorted(sums) if sums[k][FRAUD_COLUMN]]


def add_decisions(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Count inserted decision rows into the rollup (inside the caller's transaction), with
    the fraud labels already stored for them (see the module doc).

    Returns the number of rollup rows touched.
    """
    rows = list(rows)
    frauds = claim_labels(conn, [r["transaction_id"] for r in rows])
    increments = summarise(rows, frauds)
    if not increments:
        return 0
    conn.execute(_upsert(conn.dialect.name), increments)
    return len(increments)


def add_frauds(conn: Connection, changes: Iterable[tuple[datetime, int]]) -> int:
    """Move ``frauds`` by (decision time, +1 or -1) each; returns the rollup rows touched."""
    increments = fraud_increments(changes)
    if increments:
        conn.execute(_upsert(conn.dialect.name), increments)
    return len(increments)


def claim_labels(conn: Connection, transaction_ids: Sequence[str]) -> set[str]:
    """The fraud labels stored before these just-inserted decisions, marked counted; returns
    their transaction ids (the caller counts them).

    The read is a plain one, the transaction's first (the writer's other reads lock), so on
    MariaDB's REPEATABLE READ it sees every label committed before the decisions were
    inserted: a label writer that found no decision held a gap lock there until it committed.
    A label being written now waits for these decisions in ``labels.recount`` and counts
    itself. The conditional UPDATE settles a label changed since the read.
    """
    found: list[str] = []
    for i in range(0, len(transaction_ids), _IN_CHUNK):
        chunk = transaction_ids[i : i + _IN_CHUNK]
        found += conn.execute(
            select(_fl.transaction_id).where(
                _fl.transaction_id.in_(chunk), _fl.is_fraud == true(), _NOT_COUNTED
            )
        ).scalars()
    claimed = set()
    for tx in sorted(found):  # one row each, in key order: rare (a label before its decision)
        done = conn.execute(
            update(fraud_labels)
            .where(_fl.transaction_id == tx, _fl.is_fraud == true(), _NOT_COUNTED)
            .values(counted=True)
        ).rowcount
        if done == 1:
            claimed.add(tx)
    return claimed


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT of new buckets that adds to existing ones: col = col + the new value.

    Built once per dialect: building it (and its cache key) per batch cost more than the
    statement itself.
    """
    return increment_upsert(dialect, decision_rollup, ("grain", "bucket"), _ALL_COLUMNS)


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
        _mark_counted(conn)
        for inc in fraud_increments((when, 1) for when in _counted_fraud_times(conn)):
            totals[(inc["grain"], inc["bucket"])][FRAUD_COLUMN] += inc[FRAUD_COLUMN]
        rows = [totals[k] for k in sorted(totals)]
        for i in range(0, len(rows), _REBUILD_CHUNK):
            conn.execute(insert(decision_rollup), rows[i : i + _REBUILD_CHUNK])
    return counted


def frauds_uncounted(conn: Connection) -> bool:
    """Whether the fraud counts wait for :func:`recount_frauds` (an upgraded database, or
    labels loaded around ``store/labels.py``)."""
    rollup_null = select(decision_rollup.c.grain).where(decision_rollup.c.frauds.is_(None))
    label_null = select(_fl.transaction_id).where(_fl.counted.is_(None))
    return any(conn.execute(q.limit(1)).first() is not None for q in (rollup_null, label_null))


def recount_frauds(engine: Engine) -> int:
    """Count ``frauds`` afresh from the labels and decisions, in one transaction; returns the
    number of fraud-labelled decisions. For a database upgraded from before the column.

    The rollup rows are locked first, so a writer that commits meanwhile either is seen here
    or adds its own increment after this transaction.
    """
    with engine.begin() as conn:
        begin_write(conn)
        conn.execute(select(decision_rollup.c.grain).with_for_update()).all()
        _mark_counted(conn)
        conn.execute(update(decision_rollup).values(frauds=0))
        times = list(_counted_fraud_times(conn))
        add_frauds(conn, ((when, 1) for when in times))
    return len(times)


def _mark_counted(conn: Connection) -> None:
    """Set every label's ``counted``: fraud, with its decision stored."""
    decided = exists().where(_st.transaction_id == _fl.transaction_id)
    conn.execute(
        update(fraud_labels).values(
            counted=case((and_(_fl.is_fraud == true(), decided), true()), else_=false())
        )
    )


def _counted_fraud_times(conn: Connection) -> Iterator[datetime]:
    """The decision time of every counted label: one scan of the labels, each probing
    ``ix_scored_tx_scored`` (a one-off, for a rebuild or an upgrade)."""
    query = (
        select(_st.scored_at)
        .select_from(
            fraud_labels.join(scored_transactions, _st.transaction_id == _fl.transaction_id)
        )
        .where(_fl.counted == true())
    )
    yield from conn.execute(query).scalars()
