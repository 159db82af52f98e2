"""Benchmark: ``payscore train --from-db`` on a MariaDB holding N stored payments.

Run (docs/benchmarks.md): ``nice -n 10 python -m tests.integration.test_train_from_db_bench
--payments 5000000 [--baseline-csv]``. It starts its own MariaDB (the test bed's), generates a
simulated world of about N payments (the handbook's 183 days, customers scaled), stores them
with the columns the consumer writes (``LOAD DATA``, as the dashboard's bulk seeding loads;
each fraud's label known 7 days after the payment), then runs ``payscore train --from-db`` as
a child process and reports its wall time and peak memory (max RSS), after the time taken to
generate and to load the world and the script's own peak memory then; ``--baseline-csv``
times ``train --data`` on the same payments written as a CSV, in the same run. The small test
below keeps the script working.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HANDBOOK_PAYMENTS = 1_754_155
HANDBOOK_CUSTOMERS = 5_000
CHUNK = 250_000
PERIOD_COUNTS = (
    "replayed_payments",
    "train_payments",
    "validation_payments",
    "test_payments",
)
BUFFER_POOL_BYTES = 3 << 30
REDO_LOG_BYTES = 1 << 30


def load(url: str, df: Any, progress: Any = lambda _done: None) -> None:
    """The world as stored rows: decisions with the consumer's columns, fraud labels; on
    MariaDB with ``LOAD DATA`` (``bulkseed.load_tables``), ``CHUNK`` payments a transaction."""
    from payscore.config import Settings
    from payscore.core import simulator
    from payscore.dashboard.bulkseed import load_tables
    from payscore.store.engine import make_engine
    from payscore.store.initdb import create_schema

    db = make_engine(Settings(database_url=url))
    create_schema(db)
    amounts = simulator.payment_amounts(df)
    start = simulator.START.replace(tzinfo=None)
    now = datetime(2026, 1, 1)
    week = timedelta(days=7)
    columns = ("TX_TIME_SECONDS", "TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD")

    def chunks() -> Any:
        for lo in range(0, len(df), CHUNK):
            hi = min(lo + CHUNK, len(df))
            part = df.iloc[lo:hi]
            seconds, ids, customers, terminals, frauds = (
                part[c].to_numpy().tolist() for c in columns
            )
            money = [f"{a:.2f}" for a in amounts[lo:hi]]
            rows, labels = [], []
            for k in range(hi - lo):
                at = start + timedelta(seconds=seconds[k])
                rows.append(
                    {
                        "transaction_id": str(ids[k]),
                        "customer_id": str(customers[k]),
                        "terminal_id": str(terminals[k]),
                        "amount": money[k],
                        "currency": "EUR",
                        "event_time": at,
                        "received_at": now,
                        "scored_at": now,
                        "score": 0.0,
                        "prediction": 0,
                        "status": "APPROVED",
                        "reason_codes": "",
                        "model_version": "bench",
                        "kafka_topic": "payments",
                        "kafka_partition": 0,
                        "kafka_offset": lo + k,
                    }
                )
                if frauds[k]:
                    labels.append(
                        {
                            "transaction_id": str(ids[k]),
                            "is_fraud": True,
                            "known_at": at + week,
                            "source": "stream",
                        }
                    )
            yield {"scored_transactions": rows, "fraud_labels": labels}
            progress(hi)

    try:
        load_tables(db, chunks())
    finally:
        db.dispose()


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and output of one payscore child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [str(Path(sys.executable).with_name("payscore")), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode:
        raise RuntimeError(f"payscore {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, max(peak, before) / 1024, done.stdout


def note(text: str) -> None:
    """Progress on stderr, with the time of day (a 5M run takes a while)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(payments: int, workdir: Path, url: str, baseline_csv: bool) -> dict[str, Any]:
    from payscore.core import simulator

    customers = max(50, round(HANDBOOK_CUSTOMERS * payments / HANDBOOK_PAYMENTS))
    started = time.perf_counter()
    df = simulator.generate_world(n_customers=customers, n_terminals=2 * customers)
    generated = time.perf_counter() - started
    generate_mb = _own_peak_mb()
    note(f"generated {len(df):,} payments in {generated:.0f} s ({generate_mb:.0f} MB)")
    started = time.perf_counter()
    load(url, df, lambda done: note(f"loaded {done:,} rows, {time.perf_counter() - started:.0f} s"))
    loaded = time.perf_counter() - started
    env = {**os.environ, "PAYSCORE_DATABASE_URL": url, "PAYSCORE_LOG_LEVEL": "WARNING"}
    out: dict[str, Any] = {
        "payments": len(df),
        "customers": customers,
        "generate_s": round(generated, 1),
        "generate_peak_mb": round(generate_mb),
        "load_s": round(loaded, 1),
        "load_peak_mb": round(_own_peak_mb()),
    }
    csv = workdir / "world.csv"
    if baseline_csv:
        simulator.write_csv(df, csv)
    del df
    note("training from the database")
    # From the database first: a child's peak RSS is reported as the largest of any child so
    # far, so the run expected to need less memory goes first.
    wall, rss, text = timed(["train", "--from-db", "-o", str(workdir / "db.joblib")], env)
    out.update(db_wall_s=round(wall, 1), db_peak_mb=round(rss), db_output=text)
    period = json.loads((workdir / "db.joblib.json").read_text())["metadata"]["training_period"]
    out.update({k: period.get(k) for k in PERIOD_COUNTS})
    if baseline_csv:
        wall, rss, _ = timed(["train", "--data", str(csv), "-o", str(workdir / "csv.joblib")], env)
        out.update(csv_wall_s=round(wall, 1), csv_peak_mb_at_least=round(rss))
    return out


def _size_for_millions(server: Any) -> None:
    """The test bed's server is sized for tests (a 64 MB buffer pool, a 32 MB redo log):
    millions of rows and their nine indexes thrash it. A server holding them would have
    memory to match; both settings are dynamic in MariaDB 10.11."""
    conn = server._root_connect()
    try:
        cur = conn.cursor()
        cur.execute("SET GLOBAL innodb_buffer_pool_size = %s", (BUFFER_POOL_BYTES,))
        cur.execute("SET GLOBAL innodb_log_file_size = %s", (REDO_LOG_BYTES,))
        cur.execute("SELECT @@innodb_buffer_pool_size, @@innodb_log_file_size")
        pool, redo = cur.fetchone()
        note(f"MariaDB buffer pool {pool >> 20} MB, redo log {redo >> 20} MB")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=5_000_000)
    parser.add_argument("--baseline-csv", action="store_true")
    args = parser.parse_args()
    from tests.bed.mariadb import MariaDBServer

    # A stop (kill) still removes the server and its data directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = MariaDBServer()
    server.start()
    try:
        _size_for_millions(server)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.payments, Path(tmp), server.url(), args.baseline_csv)
    finally:
        server.destroy()
    text = result.pop("db_output")
    print(result)
    print(text)


@pytest.mark.slow
def test_the_benchmark_runs_at_a_tiny_scale(db_url: str, tmp_path: Path) -> None:
    result = run(30_000, tmp_path, db_url, baseline_csv=True)
    assert result["payments"] > 10_000
    assert "AUC ROC" in result["db_output"]
    assert np.isfinite(result["db_peak_mb"]) and result["db_peak_mb"] > 0


def test_load_tables_falls_back_to_inserts_off_mariadb(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, func, select

    from payscore.dashboard.bulkseed import load_tables
    from payscore.store.initdb import create_schema
    from payscore.store.schema import fraud_labels

    db = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    create_schema(db)
    at = datetime(2026, 1, 1)
    label = {"is_fraud": True, "known_at": at, "source": "stream"}
    chunks = [
        {"fraud_labels": [{"transaction_id": "a", **label}, {"transaction_id": "b", **label}]},
        {"fraud_labels": [{"transaction_id": "c", **label}]},
    ]
    assert load_tables(db, chunks) == 3
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(fraud_labels)).scalar() == 3
    db.dispose()


if __name__ == "__main__":
    main()
