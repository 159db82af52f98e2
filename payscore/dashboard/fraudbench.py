"""Time the page's fraud count per range: from the rollup against straight from the tables.

    python -m payscore.dashboard.fraudbench --database-url mysql://u:p@host/db --rows 1000000

Seeds like ``payscore.dashboard.bench`` (or reuses its data), then for each range runs the two
ways in turn, ``--repeat`` times each after a warm-up, checks that they agree, and prints the
fastest and the median of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, func, select

from payscore.dashboard import queries as q
from payscore.dashboard.bench import RANGES, bench_range, data_arguments, open_seeded
from payscore.dashboard.figures import TimeRange
from payscore.errors import PayscoreError
from payscore.store.schema import fraud_labels, scored_transactions

WAYS: dict[str, Callable[[Connection, TimeRange], int]] = {
    "tables": lambda conn, tr: q.fraud_labelled(conn, tr, rollup=False),
    "rollup": lambda conn, tr: q.fraud_labelled(conn, tr, rollup=True),
}


def time_range(engine: Engine, tr: TimeRange, repeat: int) -> dict[str, tuple[int, list[float]]]:
    """Each way's answer and times, the ways alternating run by run."""
    out: dict[str, tuple[int, list[float]]] = {}
    with engine.connect() as conn:
        for name, way in WAYS.items():
            out[name] = (way(conn, tr), [])  # warm-up
        for _ in range(repeat):
            for name, way in WAYS.items():
                started = time.perf_counter()
                answer = way(conn, tr)
                out[name][1].append(time.perf_counter() - started)
                if answer != out[name][0]:
                    raise PayscoreError(f"{name} answered {answer}, then {out[name][0]}")
    return out


def run(database_url: str | None, rows: int, span_days: float, repeat: int) -> str:
    lines: list[str] = []
    engine, now = open_seeded(database_url, rows, span_days, lines)
    try:
        with engine.connect() as conn:
            decided = conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
            frauds = conn.execute(
                select(func.count()).select_from(fraud_labels).where(fraud_labels.c.is_fraud)
            ).scalar()
        lines.append(f"database: {engine.dialect.name}, {decided:,} decisions, {frauds:,} frauds")
        lines.append(f"{'range':<16} {'frauds':>8}  tables best / median   rollup best / median")
        for label, seconds in RANGES.items():
            timed = time_range(engine, bench_range(seconds, now), repeat)
            answers = {answer for answer, _ in timed.values()}
            if len(answers) != 1:
                raise PayscoreError(f"{label}: the ways disagree: {timed}")
            cells = [
                f"{min(t) * 1000:8.1f} / {statistics.median(t) * 1000:6.1f} ms"
                for _, t in timed.values()
            ]
            lines.append(f"{label:<16} {answers.pop():>8,}  {cells[0]}  {cells[1]}")
    finally:
        engine.dispose()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_arguments(parser, 1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per way and range")
    args = parser.parse_args(argv)
    try:
        report = run(args.database_url, args.rows, args.span_days, args.repeat)
    except PayscoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
