"""Benchmark: ``payscore train --from-db`` on a MariaDB holding N stored payments.

Run (docs/benchmarks.md): ``nice -n 10 python -m tests.integration.test_train_from_db_bench
--payments 5000000 [--baseline-csv]``. It starts its own MariaDB (the test bed's), generates a
simulated world of about N payments (the handbook's 183 days, customers scaled), stores them
with the columns the consumer writes (bulk inserts, each fraud's label known 7 days after the
payment), then runs ``payscore train --from-db`` as a child process and reports its wall
time and peak memory (max RSS); ``--baseline-csv`` times ``train --data`` on the same
payments written as a CSV, in the same run. The small test below keeps the script working.
"""

from __future__ import annotations

import argparse
import os
import resource
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
BATCH = 20_000


def load(url: str, df: Any) -> None:
    """The world as stored rows: decisions with the consumer's columns, fraud labels."""
    from sqlalchemy import insert

    from payscore.config import Settings
    from payscore.core import simulator
    from payscore.store.engine import make_engine
    from payscore.store.initdb import create_schema
    from payscore.store.schema import fraud_labels, scored_transactions

    db = make_engine(Settings(database_url=url))
    create_schema(db)
    amounts = simulator.payment_amounts(df)
    start = simulator.START.replace(tzinfo=None)
    seconds = df["TX_TIME_SECONDS"].to_numpy()
    ids = df["TRANSACTION_ID"].astype(str).to_numpy()
    customers = df["CUSTOMER_ID"].astype(str).to_numpy()
    terminals = df["TERMINAL_ID"].astype(str).to_numpy()
    frauds = df["TX_FRAUD"].to_numpy().astype(bool)
    now = datetime(2026, 1, 1)
    try:
        for lo in range(0, len(df), BATCH):
            hi = min(lo + BATCH, len(df))
            rows, labels = [], []
            for i in range(lo, hi):
                at = start + timedelta(seconds=int(seconds[i]))
                rows.append(
                    {
                        "transaction_id": ids[i],
                        "customer_id": customers[i],
                        "terminal_id": terminals[i],
                        "amount": f"{amounts[i]:.2f}",
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
                        "kafka_offset": i,
                    }
                )
                if frauds[i]:
                    labels.append(
                        {
                            "transaction_id": ids[i],
                            "is_fraud": True,
                            "known_at": at + timedelta(days=7),
                            "source": "stream",
                        }
                    )
            with db.begin() as conn:
                conn.execute(insert(scored_transactions), rows)
                if labels:
                    conn.execute(insert(fraud_labels), labels)
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


def run(payments: int, workdir: Path, url: str, baseline_csv: bool) -> dict[str, Any]:
    from payscore.core import simulator

    customers = max(50, round(HANDBOOK_CUSTOMERS * payments / HANDBOOK_PAYMENTS))
    started = time.perf_counter()
    df = simulator.generate_world(n_customers=customers, n_terminals=2 * customers)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    load(url, df)
    loaded = time.perf_counter() - started
    env = {**os.environ, "PAYSCORE_DATABASE_URL": url, "PAYSCORE_LOG_LEVEL": "WARNING"}
    out: dict[str, Any] = {
        "payments": len(df),
        "customers": customers,
        "generate_s": round(generated, 1),
        "load_s": round(loaded, 1),
    }
    csv = workdir / "world.csv"
    if baseline_csv:
        simulator.write_csv(df, csv)
    del df
    # From the database first: a child's peak RSS is reported as the largest of any child so
    # far, so the run expected to need less memory goes first.
    wall, rss, text = timed(["train", "--from-db", "-o", str(workdir / "db.joblib")], env)
    out.update(db_wall_s=round(wall, 1), db_peak_mb=round(rss), db_output=text)
    if baseline_csv:
        wall, rss, _ = timed(["train", "--data", str(csv), "-o", str(workdir / "csv.joblib")], env)
        out.update(csv_wall_s=round(wall, 1), csv_peak_mb_at_least=round(rss))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=5_000_000)
    parser.add_argument("--baseline-csv", action="store_true")
    args = parser.parse_args()
    from tests.bed.mariadb import MariaDBServer

    server = MariaDBServer()
    server.start()
    try:
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


if __name__ == "__main__":
    main()
