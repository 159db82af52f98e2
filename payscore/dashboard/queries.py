"""Every SQL statement the dashboard runs: SQLAlchemy Core, bound parameters, served by indexes.

Statements are built by ``stmt_*`` functions (so the benchmark can EXPLAIN them) and run by the
fetch functions beside them. Aggregation happens in SQL; only bounded row sets come back.
Time ranges filter on ``scored_at`` (wall-clock decision time), so replayed 2018 data decided
today still shows up under "last hour"; times are naive UTC throughout. Counts, activity and
score bins of long ranges come from ``decision_rollup`` with exact edges from the table (see
``rollups.py``); same results. So do fraud counts, kept per bucket by the label writers.
Lookups by key (review queue, one customer, the model) are in ``lookups.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    case,
    cast,
    func,
    inspect,
    literal_column,
    select,
    true,
)

from payscore.dashboard import rollups as ru
from payscore.dashboard.figures import (
    STATUSES,
    Headline,
    TimeRange,
    choose_bin,
    floor_time,
    percentile,
)
from payscore.dashboard.leaders import riskiest_candidates
from payscore.store.schema import (
    ROLLUP_SCORE_BINS,
    dead_letters,
    decision_rollup,
    fraud_labels,
    label_events,
    model_versions,
    scored_transactions,
)

st = scored_transactions
fl = fraud_labels

# Ranges at least this long count fraud from the fraud labels (each probing its decision's
# time); shorter ones from their decisions (each probing for a label): fewer probes each way.
FRAUD_FROM_LABELS = timedelta(hours=2)
# The newest decisions whose latency gives the median and p99 (nearest rank: the 20th slowest).
# Each costs a row lookup: 10,000 took 30 ms of a page run at 10M decisions, 2,000 take 8 ms.
LATENCY_SAMPLE = 2_000
SCORE_BINS = ROLLUP_SCORE_BINS  # the rollup keeps the page's histogram bins
MAX_ROWS = 1_000  # hard cap on any table the page shows
# A capped list is fetched one row longer than it is shown: that row tells the page to say so.
FETCH_CAP = MAX_ROWS + 1
MAX_FILTER_CHARS = 64
DECISION_COLUMNS = (
    "scored_at", "transaction_id", "customer_id", "terminal_id", "amount", "currency",
    "score", "status", "reason_codes", "model_version", "event_time",
)  # fmt: skip


@dataclass(frozen=True)
class DecisionFilter:
    """The analyst's filters on the latest-decisions table; empty strings mean no filter."""

    status: str | None = None
    customer_id: str | None = None
    terminal_id: str | None = None
    reason: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.status:
            out.append(st.c.status == self.status)
        if self.customer_id:
            out.append(st.c.customer_id == self.customer_id[:MAX_FILTER_CHARS])
        if self.terminal_id:
            out.append(st.c.terminal_id == self.terminal_id[:MAX_FILTER_CHARS])
        if self.reason:
            # autoescape makes '%' and '_' in the analyst's text literal, not wildcards.
            out.append(st.c.reason_codes.contains(self.reason[:MAX_FILTER_CHARS], autoescape=True))
        return out


# --- dialect-specific expressions, chosen in one place --------------------------------------


def bucket_expr(dialect: str, column: Any, seconds: int) -> ColumnElement[str]:
    """The start of the ``seconds``-long bin (counted from the epoch) holding a datetime, as
    'YYYY-MM-DD hh:mm:ss' text; the same bins as ``figures.floor_time``."""
    # Inlined, not bound: SELECT and GROUP BY must hold the same expression text. An int.
    n = literal_column(str(int(seconds)), Integer)
    if dialect == "sqlite":
        epoch = cast(func.strftime(literal_column("'%s'"), column), Integer)
        return func.datetime(epoch // n * n, literal_column("'unixepoch'"))
    # TIMESTAMPDIFF/TIMESTAMPADD, unlike UNIX_TIMESTAMP, ignore the session time zone.
    since = func.timestampdiff(literal_column("SECOND"), literal_column("'1970-01-01'"), column)
    start = func.timestampadd(
        literal_column("SECOND"), since.op("DIV")(n) * n, literal_column("'1970-01-01'")
    )
    return func.date_format(start, literal_column("'%Y-%m-%d %H:%i:%s'"))


def score_bin_expr(dialect: str, bins: int = SCORE_BINS) -> ColumnElement[int]:
    """The histogram bin of ``score`` in [0, 1]; CAST truncates in SQLite, MySQL needs FLOOR."""
    scaled = st.c.score * bins
    if dialect == "sqlite":
        return cast(scaled, Integer)
    return func.floor(scaled)


# --- statements -------------------------------------------------------------------------------

Ranges = TimeRange | Sequence[TimeRange]  # one range, or the base-table edges of a rollup plan


def _scored(tr: Ranges) -> list[ColumnElement[bool]]:
    if isinstance(tr, TimeRange):
        return tr.clauses(st.c.scored_at)
    return [ru.in_ranges(st.c.scored_at, tr)]


def stmt_status_counts(tr: Ranges) -> Select:
    # One row of conditional sums, not GROUP BY status: MariaDB would otherwise walk the whole
    # (status, event_time) index for the grouping instead of the scored_at range.
    return select(*_status_sums()).where(*_scored(tr))


def stmt_fraud_labelled(tr: Ranges) -> Select:
    """Decisions of the range (or of a rollup plan's edges) labelled fraud, from the tables.

    The page reads long ranges from the rollup (``fraud_labelled``); this serves short
    ranges, the edges, and a database whose rollup has not counted frauds yet."""
    # Driven from the fraud labels (ix_labels_fraud), each looked up in the
    # (transaction_id, scored_at) index: both sides index-only. MariaDB prefers the unique key
    # on transaction_id, which needs the whole row for scored_at, hence the hint.
    # A short range instead starts from its few decisions (scored_at index) and probes labels.
    # ("IS TRUE" is not sargable, so it keeps MariaDB off ix_labels_fraud there.)
    long = isinstance(tr, TimeRange) and (
        tr.start is None or tr.end is None or tr.end - tr.start >= FRAUD_FROM_LABELS
    )
    stmt = (
        select(func.count())
        .select_from(fl.join(st, st.c.transaction_id == fl.c.transaction_id))
        .where(fl.c.is_fraud == true() if long else fl.c.is_fraud.is_(True))
        .where(*_scored(tr))
    )
    if not long:
        return stmt
    for dialect in ("mysql", "mariadb"):
        stmt = stmt.with_hint(st, "FORCE INDEX (ix_scored_tx_scored)", dialect_name=dialect)
    return stmt


def stmt_dead_letters(tr: TimeRange) -> Select:
    return (
        select(func.count()).select_from(dead_letters).where(*tr.clauses(dead_letters.c.created_at))
    )


def stmt_span(tr: TimeRange) -> Select:
    return select(func.min(st.c.scored_at), func.max(st.c.scored_at)).where(
        *tr.clauses(st.c.scored_at)
    )


def stmt_latency_cutoff(tr: TimeRange, limit: int = LATENCY_SAMPLE) -> Select:
    """The scored_at of the limit-th newest decision: an index-only ORDER BY + OFFSET."""
    return (
        select(st.c.scored_at)
        .where(*tr.clauses(st.c.scored_at))
        .order_by(st.c.scored_at.desc())
        .limit(1)
        .offset(limit - 1)
    )


def stmt_latency_sample(
    tr: TimeRange, cutoff: datetime | None = None, dialect: str = "sqlite"
) -> Select:
    """The newest decisions of the range from the cutoff on, as a plain index range scan.

    MySQL returns each latency as integer microseconds: converting 20,000 datetimes on the
    client took longer than the query. SQLite returns both times (its julianday arithmetic is
    not exact to the microsecond)."""
    where = tr.clauses(st.c.scored_at)
    if cutoff is not None:
        where.append(st.c.scored_at >= cutoff)
    if dialect == "sqlite":
        return select(st.c.received_at, st.c.scored_at).where(*where)
    micros = func.timestampdiff(literal_column("MICROSECOND"), st.c.received_at, st.c.scored_at)
    return select(micros).where(*where)


def latency_sample_ms(conn: Connection, tr: TimeRange, cutoff: datetime | None) -> list[float]:
    """Received -> scored, in milliseconds, of the newest decisions from ``cutoff`` on."""
    dialect = conn.dialect.name
    rows = conn.execute(stmt_latency_sample(tr, cutoff, dialect))
    if dialect == "sqlite":
        return [(scored - received).total_seconds() * 1000.0 for received, scored in rows]
    return [micros / 1000.0 for micros in rows.scalars().all()]


def stmt_activity(dialect: str, tr: Ranges, seconds: int) -> Select:
    bucket = bucket_expr(dialect, st.c.scored_at, seconds).label("bucket")
    return (
        select(bucket, func.count().label("payments"), *_status_sums())
        .where(*_scored(tr))
        .group_by(bucket)
        .order_by(bucket)
    )


def stmt_score_histogram(dialect: str, tr: Ranges) -> Select:
    bin_ = score_bin_expr(dialect).label("bin")
    return (
        select(bin_, func.count().label("payments"))
        .where(*_scored(tr))
        .group_by(bin_)
        .order_by(bin_)
    )


def stmt_latest(tr: TimeRange, flt: DecisionFilter, limit: int = 200) -> Select:
    return (
        select(*(st.c[name] for name in DECISION_COLUMNS))
        .where(*tr.clauses(st.c.scored_at), *flt.clauses())
        .order_by(st.c.scored_at.desc(), st.c.id.desc())
        .limit(min(limit, FETCH_CAP))
    )


def stmt_riskiest(column: str, tr: TimeRange, limit: int = 20) -> Select:
    key = st.c[column]
    declined, review = _status_sums()[2], _status_sums()[1]
    return (
        select(
            key,
            func.count().label("payments"),
            declined,
            review,
            func.max(st.c.score).label("max_score"),
            func.avg(st.c.score).label("mean_score"),
        )
        # IN, not != 'APPROVED': two equality ranges of ix_scored_status_scored, each bounded
        # by scored_at (EXPLAIN key_len 50, not 42): a day reads its day, not every
        # flagged decision ever stored.
        .where(*tr.clauses(st.c.scored_at), st.c.status.in_(("REVIEW", "DECLINED")))
        .group_by(key)
        .order_by(declined.desc(), review.desc(), func.max(st.c.score).desc(), key)
        .limit(min(limit, MAX_ROWS))
    )


def _status_sums() -> list[ColumnElement[Any]]:
    return [
        func.sum(case((st.c.status == status, 1), else_=0)).label(status.lower())
        for status in STATUSES
    ]


# --- fetching -------------------------------------------------------------------------------


# The tables the page reads (or, labelling, writes): only these must exist. A database made
# by an older payscore lacks newer tables (rules, models, snapshots) and still opens.
DASHBOARD_TABLES = (
    scored_transactions,
    decision_rollup,
    fraud_labels,
    label_events,
    dead_letters,
    model_versions,
)


def missing_tables(conn: Connection) -> list[str]:
    """Tables the dashboard reads that the database lacks (all of them if it is empty)."""
    present = set(inspect(conn).get_table_names())
    return [t.name for t in DASHBOARD_TABLES if t.name not in present]


def status_counts(conn: Connection, tr: TimeRange, rollup: bool | None = None) -> dict[str, int]:
    """Decisions per status in the range; ``rollup`` None picks the path by range length."""
    statements: list[Select] = []
    if rollup is None:
        rollup = ru.use_rollup(tr)
    if rollup:
        p = ru.plan(tr)
        if p.uses_rollup:
            statements.append(ru.stmt_status_counts(p))
        if p.edges:
            statements.append(stmt_status_counts(p.edges))
    else:
        statements.append(stmt_status_counts(tr))
    counts = dict.fromkeys(STATUSES, 0)
    for stmt in statements:
        for status, n in zip(STATUSES, conn.execute(stmt).one(), strict=True):
            counts[status] += int(n or 0)
    return counts


def fraud_labelled(conn: Connection, tr: TimeRange, rollup: bool | None = None) -> int:
    """Decisions of the range (by decision time) whose counting label is fraud.

    Long ranges read the rollup's per-hour and per-minute fraud counts, which the label
    writers keep (store/labels.py), and the partial minutes at the ends from the tables; a
    database whose rollup has not counted frauds yet is read from the tables throughout.
    """
    if rollup is None:
        rollup = ru.use_rollup(tr)
    if not rollup or not _rollup_counts_frauds(conn):
        return int(conn.execute(stmt_fraud_labelled(tr)).scalar_one())
    p = ru.plan(tr)
    total = 0
    if p.uses_rollup:
        frauds, uncounted = conn.execute(ru.stmt_frauds(p)).one()
        if uncounted:
            return int(conn.execute(stmt_fraud_labelled(tr)).scalar_one())
        total += int(frauds or 0)
    if p.edges:
        total += int(conn.execute(stmt_fraud_labelled(p.edges)).scalar_one())
    return total


def _rollup_counts_frauds(conn: Connection) -> bool:
    """Whether ``decision_rollup`` has its fraud column (a database made by an older payscore
    lacks it until ``payscore initdb``). Asked once per pooled connection: columns are only
    ever added."""
    known = conn.info.get("payscore_rollup_frauds")
    if known is None:
        columns = {c["name"] for c in inspect(conn).get_columns(decision_rollup.name)}
        known = conn.info["payscore_rollup_frauds"] = "frauds" in columns
    return bool(known)


def headline(
    conn: Connection,
    tr: TimeRange,
    rollup: bool | None = None,
    fraud: bool = True,
    sample: int = LATENCY_SAMPLE,
) -> Headline:
    """The headline figures, latency over the newest ``sample`` decisions; with ``fraud``
    False the fraud count is left at 0 for the caller to fetch (the page does, on a second
    connection, while these run)."""
    counts = status_counts(conn, tr, rollup)
    decided = sum(counts.values())
    fraud_n = fraud_labelled(conn, tr, rollup) if fraud else 0
    dead = int(conn.execute(stmt_dead_letters(tr)).scalar_one())
    first, last = conn.execute(stmt_span(tr)).one()
    cutoff = conn.execute(stmt_latency_cutoff(tr, sample)).scalar()
    latencies = latency_sample_ms(conn, tr, cutoff)
    return Headline(
        decided=decided,
        counts={s: counts.get(s, 0) for s in STATUSES},
        fraud_labelled=fraud_n,
        dead_letters=dead,
        active_seconds=(last - first).total_seconds() if first is not None else 0.0,
        latency_median_ms=percentile(latencies, 0.5),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_sample=len(latencies),
    )


def activity(
    conn: Connection, tr: TimeRange, seconds: int, rollup: bool | None = None
) -> pd.DataFrame:
    """Payments and decisions per time bin of ``seconds`` (bins with decisions only)."""
    rows: list[Any]
    if seconds < ru.MINUTE:
        rollup = False  # the rollup has nothing finer than minutes
    if ru.use_rollup(tr) if rollup is None else rollup:
        p = ru.plan(tr, coarsest=min(seconds, ru.HOUR))
        bin_ = bucket_expr(conn.dialect.name, ru.ru.c.bucket, seconds)
        buckets = {
            datetime.fromisoformat(bucket): [int(n or 0) for n in counts]
            for bucket, *counts in conn.execute(ru.stmt_buckets(p, bin_))
        }
        if p.edges:
            edge_rows = conn.execute(stmt_activity(conn.dialect.name, p.edges, seconds)).all()
            for bucket, *counts in edge_rows:
                acc = buckets.setdefault(datetime.fromisoformat(bucket), [0] * len(counts))
                for i, n in enumerate(counts):
                    acc[i] += int(n or 0)
        rows = [(b, *buckets[b]) for b in sorted(buckets)]
    else:
        rows = list(conn.execute(stmt_activity(conn.dialect.name, tr, seconds)))
    frame = pd.DataFrame(rows, columns=["bucket", "payments", "approved", "review", "declined"])
    frame["bucket"] = pd.to_datetime(frame["bucket"])
    return frame.astype({c: "int64" for c in frame.columns if c != "bucket"})


def activity_chart(conn: Connection, tr: TimeRange, decided: int) -> tuple[int, pd.DataFrame]:
    """The activity chart of a range holding ``decided`` decisions: the bin chosen from them
    (see ``choose_bin``), and every bin from the first to the last, empty ones as zeros."""
    first, last = conn.execute(stmt_span(tr)).one()
    seconds = choose_bin(first, last, decided)
    if first is None:
        return seconds, activity(conn, tr, seconds)
    # Only the active part of the range: the same rows, and a bounded scan for "all time".
    active = TimeRange(first, last + timedelta(microseconds=1))
    frame = activity(conn, active, seconds).set_index("bucket")
    bins = pd.date_range(floor_time(first, seconds), floor_time(last, seconds), freq=f"{seconds}s")
    frame = frame.reindex(bins, fill_value=0).rename_axis("bucket").reset_index()
    return seconds, frame


def score_histogram(conn: Connection, tr: TimeRange, rollup: bool | None = None) -> pd.DataFrame:
    """Decision counts per score bin; a score of exactly 1.0 joins the top bin."""
    bins = SCORE_BINS
    counts = [0] * bins
    statements: list[Select] = []
    if ru.use_rollup(tr) if rollup is None else rollup:
        p = ru.plan(tr)
        if p.uses_rollup:
            for i, n in enumerate(conn.execute(ru.stmt_score_bins(p)).one()):
                counts[i] += int(n or 0)
        if p.edges:
            statements.append(stmt_score_histogram(conn.dialect.name, p.edges))
    else:
        statements.append(stmt_score_histogram(conn.dialect.name, tr))
    for stmt in statements:
        for bin_, n in conn.execute(stmt):
            counts[min(max(int(bin_), 0), bins - 1)] += int(n)
    lows = [i / bins for i in range(bins)]
    return pd.DataFrame({"score_from": lows, "payments": counts})


def latest_decisions(
    conn: Connection, tr: TimeRange, flt: DecisionFilter, limit: int = 200
) -> pd.DataFrame:
    return _frame(conn.execute(stmt_latest(tr, flt, limit)).all(), DECISION_COLUMNS)


def velocity_alerts(conn: Connection, tr: TimeRange, limit: int = 100) -> pd.DataFrame:
    return latest_decisions(conn, tr, DecisionFilter(reason="VELOCITY"), limit)


def riskiest(conn: Connection, column: str, tr: TimeRange, limit: int = 20) -> pd.DataFrame:
    """Customers or terminals with the most declines, then reviews, then highest score."""
    if column not in {"customer_id", "terminal_id"}:
        raise ValueError(column)
    names = (column, "risky_payments", "declined", "review", "max_score", "mean_score")
    leaders = riskiest_candidates(conn, column, tr, min(limit, MAX_ROWS))
    stmt = stmt_riskiest(column, tr, limit)
    if leaders is not None:
        stmt = stmt.where(st.c[column].in_(leaders))
    frame = _frame(conn.execute(stmt).all(), names)
    return frame.astype({"risky_payments": "int64", "declined": "int64", "review": "int64"})


def _frame(rows: Sequence[Any], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for name in ("amount", "score", "max_score", "mean_score"):
        if name in frame:
            frame[name] = frame[name].astype("float64")
    return frame
