"""Time the dashboard's queries on a large decisions table and show their query plans.

    python -m payscore.dashboard.bench --database-url mysql://u:p@host/db --rows 1000000

Seeds ``--rows`` synthetic decisions into an empty database (or reuses one that already holds
at least that many), then runs every query one page render makes, for each time range, and
prints per-query and total times (median of ``--repeat`` runs after a warm-up) plus EXPLAIN.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from payscore.config import load_settings
from payscore.dashboard import lookups, rollups
from payscore.dashboard import queries as q
from payscore.dashboard.bulkseed import seed_fast
from payscore.dashboard.figures import TimeRange, choose_bin, utc_now
from payscore.errors import PayscoreError
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.rollup import rebuild
from payscore.store.schema import decision_rollup, scored_transactions

RANGES: dict[str, int | None] = {
    "last 15 minutes": 900,
    "last hour": 3600,
    "last day": 86400,
    "last 7 days": 7 * 86400,
    "all time": None,
    "custom": -1,
}


def bench_range(seconds: int | None, now: datetime) -> TimeRange:
    """The range a page render would use; "custom" is 3 days with ragged minute edges."""
    if seconds == -1:
        end = now - timedelta(hours=20, minutes=7, seconds=12.5)
        return TimeRange(end - timedelta(days=3, minutes=41, seconds=33), end)
    return TimeRange.last(seconds, now)


def page_queries(tr: TimeRange, customer: str) -> list[tuple[str, Callable[[Connection], Any]]]:
    """The fetches one render of the page makes, in page order (customer tab filled in)."""
    flt = q.DecisionFilter()
    return [
        ("headline (5 statements)", lambda c: q.headline(c, tr)),
        ("review backlog (capped)", lookups.review_backlog),
        ("activity chart (span + bins)", lambda c: q.activity_chart(c, tr, 10_000)),
        ("score histogram", lambda c: q.score_histogram(c, tr)),
        ("latest decisions (200)", lambda c: q.latest_decisions(c, tr, flt)),
        ("latest, status=REVIEW", lambda c: q.latest_decisions(c, tr, q.DecisionFilter("REVIEW"))),
        ("velocity alerts", lambda c: q.velocity_alerts(c, tr)),
        ("riskiest customers", lambda c: q.riskiest(c, "customer_id", tr)),
        ("riskiest terminals", lambda c: q.riskiest(c, "terminal_id", tr)),
        # The same ranking as one statement over every flagged decision of the range (the
        # page's query before the leaders-by-declines pruning): a same-run baseline.
        (
            "riskiest customers, one query",
            lambda c: c.execute(q.stmt_riskiest("customer_id", tr)).all(),
        ),
        ("review queue (100)", lambda c: lookups.review_queue(c, 100)),
        ("customer profile", lambda c: lookups.customer_profile(c, customer)),
        ("customer history", lambda c: lookups.customer_history(c, customer)),
        ("model info", lookups.latest_model),
    ]


def explained(tr: TimeRange, dialect: str, customer: str) -> list[tuple[str, Any]]:
    """The heavy statements whose plans matter."""
    return [
        ("status counts", q.stmt_status_counts(tr)),
        ("fraud labelled", q.stmt_fraud_labelled(tr)),
        ("latency cutoff", q.stmt_latency_cutoff(tr)),
        ("review backlog", lookups.stmt_review_backlog()),
        ("activity", q.stmt_activity(dialect, tr, choose_bin(tr.start, tr.end, 10**6))),
        ("latest decisions", q.stmt_latest(tr, q.DecisionFilter())),
        ("riskiest customers", q.stmt_riskiest("customer_id", tr)),
        ("review queue", lookups.stmt_review_queue()),
        ("customer history", lookups.stmt_customer_history(customer)),
    ]


def explained_long(tr: TimeRange) -> list[tuple[str, Any]]:
    """The statements of a long range: rollup rows, base-table edges, riskiest."""
    p = rollups.plan(tr)
    out = [("rollup status counts", rollups.stmt_status_counts(p))]
    if p.edges:
        out.append(("edge status counts", q.stmt_status_counts(p.edges)))
    return [
        *out,
        ("fraud labelled", q.stmt_fraud_labelled(tr)),
        ("latency cutoff", q.stmt_latency_cutoff(tr)),
        ("riskiest customers", q.stmt_riskiest("customer_id", tr)),
        ("latest, status=REVIEW", q.stmt_latest(tr, q.DecisionFilter("REVIEW"))),
    ]


def time_queries(
    engine: Engine, tr: TimeRange, customer: str, repeat: int
) -> list[tuple[str, float]]:
    out = []
    with engine.connect() as conn:
        for name, run in page_queries(tr, customer):
            run(conn)  # warm-up: plans and pages cached as on a live page
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                run(conn)
                times.append(time.perf_counter() - started)
            out.append((name, statistics.median(times)))
    return out


def explain(conn: Connection, stmt: Any) -> list[str]:
    """EXPLAIN (MySQL) or EXPLAIN QUERY PLAN (SQLite) of a Core statement, with its params."""
    # Expanding IN lists rendered as one placeholder per value, with their values.
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args: Any = params
    if compiled.positional:  # sqlite "?" and mysqldb "%s" both take a tuple
        args = tuple(params[k] for k in compiled.positiontup or ())
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, args).all()
        return [str(r[-1]) for r in rows]
    result = conn.exec_driver_sql("EXPLAIN " + compiled.string, args)
    lines = []
    for row in result.mappings():
        lines.append(
            f"table={row['table']} type={row['type']} key={row['key']} rows={row['rows']} "
            f"extra={row['Extra']}"
        )
    return lines


def data_arguments(parser: argparse.ArgumentParser, rows: int) -> None:
    """The options saying which database to use and what to seed into it when empty."""
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: PAYSCORE_DATABASE_URL)")
    parser.add_argument("--rows", type=int, default=rows, help="decisions to seed")
    parser.add_argument("--span-days", type=float, default=7.0, help="decision-time span")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_arguments(parser, 1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query")
    parser.add_argument("--no-explain", action="store_true", help="skip the query plans")
    args = parser.parse_args(argv)
    try:
        report = run(args.database_url, args.rows, args.span_days, args.repeat, not args.no_explain)
    except PayscoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0


def open_seeded(
    database_url: str | None, rows: int, span_days: float, lines: list[str]
) -> tuple[Engine, datetime]:
    """An engine on the database, seeded if empty (see ``ensure_rows``), and its 'now'."""
    settings = load_settings(overrides={"database_url": database_url}).settings
    engine = make_engine(settings)
    try:
        create_schema(engine)
        return engine, ensure_rows(engine, rows, span_days, lines)
    except BaseException:
        engine.dispose()
        raise


def run(database_url: str | None, rows: int, span_days: float, repeat: int, plans: bool) -> str:
    """Seed if needed, time the page's queries per range; returns the printable report."""
    lines: list[str] = []
    engine, seeded_at = open_seeded(database_url, rows, span_days, lines)
    try:
        with engine.connect() as conn:
            present = conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
            customer = conn.execute(
                select(scored_transactions.c.customer_id)
                .order_by(scored_transactions.c.scored_at.desc())
                .limit(1)
            ).scalar_one()
        lines.append(f"database: {engine.dialect.name}, {present:,} decisions")
        grand = {}
        for label, seconds in RANGES.items():
            tr = bench_range(seconds, seeded_at)
            timed = time_queries(engine, tr, customer, repeat)
            grand[label] = sum(t for _, t in timed)
            lines.append(f"\n## {label}: total {grand[label] * 1000:.1f} ms")
            lines += [f"  {name:<26} {t * 1000:8.1f} ms" for name, t in timed]
        if plans:
            tr = TimeRange.last(3600, seeded_at)
            lines.append("\n## query plans (last hour)")
            with engine.connect() as conn:
                for name, stmt in explained(tr, engine.dialect.name, customer):
                    lines.append(f"  {name}:")
                    lines += [f"    {line}" for line in explain(conn, stmt)]
            lines.append("\n## query plans (last day)")
            with engine.connect() as conn:
                for name, stmt in explained_long(TimeRange.last(86400, seeded_at)):
                    lines.append(f"  {name}:")
                    lines += [f"    {line}" for line in explain(conn, stmt)]
    finally:
        engine.dispose()
    return "\n".join(lines)


def ensure_rows(engine: Engine, rows: int, span_days: float, lines: list[str]) -> datetime:
    """Seed an empty table; reuse a full one. Returns the 'now' the data is relative to."""
    with engine.connect() as conn:
        present = conn.execute(select(func.count()).select_from(scored_transactions)).scalar_one()
        newest = conn.execute(select(func.max(scored_transactions.c.scored_at))).scalar()
    if present >= rows and newest is not None:
        lines.append(f"reusing {present:,} decisions already in the database")
        with engine.connect() as conn:
            rolled = conn.execute(select(func.count()).select_from(decision_rollup)).scalar()
        if not rolled:  # seeded before the rollup existed
            started = time.perf_counter()
            rebuild(engine)
            lines.append(f"rebuilt decision_rollup in {time.perf_counter() - started:.1f} s")
        return newest  # ranges end at the newest decision, however old the data is
    if present:
        raise PayscoreError(
            f"the database holds {present:,} decisions, fewer than --rows {rows:,}; "
            "use an empty database"
        )
    started = time.perf_counter()
    summary = seed_fast(engine, rows, span_seconds=span_days * 86400)
    took = time.perf_counter() - started
    lines.append(
        f"seeded {summary.decisions:,} decisions, {summary.labels:,} labels, "
        f"{summary.dead_letters:,} dead letters in {took:.1f} s ({rows / took:,.0f} rows/s)"
    )
    return utc_now()


if __name__ == "__main__":
    raise SystemExit(main())
