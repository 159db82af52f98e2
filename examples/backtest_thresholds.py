"""Train on your own labelled CSV, then backtest a lower review threshold before deploying it.

    python examples/backtest_thresholds.py                       # the sample data, review 0.01
    python examples/backtest_thresholds.py --data my.csv --review-threshold 0.02

Runs the commands you would run by hand:

    payscore train --data DATA --output WORK/model.joblib
    payscore score --input DATA --model WORK/model.joblib --output WORK/decisions-model.csv
    PAYSCORE_REVIEW_THRESHOLD=0.01 payscore score ... --output WORK/decisions-candidate.csv

and then compares the two decision files. `payscore train --data` fits the model on the
oldest 70 % of the file (by event time), sets its thresholds on the next 10 % and tests it on
the newest 20 %; the comparison here counts only that newest part, which the model never
learned from. Scoring the whole file rather than just that part gives each payment its
customer's and terminal's history as the consumer would have had it.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from payscore.core.model import load_artifact

SAMPLE = Path(__file__).resolve().parent / "data" / "payments.csv"


def payscore(*args: str, env: dict[str, str] | None = None) -> None:
    """Run one payscore command as a user would; stop here if it fails."""
    exe = shutil.which("payscore")
    if exe is None:
        sys.exit("payscore is not on PATH: pip install payscore (or activate its virtualenv)")
    print(f"\n$ payscore {' '.join(args)}", flush=True)
    done = subprocess.run([exe, *args], env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"payscore {args[0]} failed (exit code {done.returncode}); see above")


def utc(text: str) -> datetime:
    """An ISO 8601 time as payscore reads it ("Z" included, which Python 3.10 lacks)."""
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def held_out_labels(data: Path, test_start: datetime, scored: set[str]) -> dict[str, bool]:
    """transaction_id -> is_fraud for the scored payments at or after ``test_start``."""
    labels = {}
    with data.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tx = row["transaction_id"]
            # Rows payscore score rejected (and listed) are not in the comparison.
            if tx in scored and tx not in labels and utc(row["event_time"]) >= test_start:
                labels[tx] = row["is_fraud"].strip().lower() in {"1", "true", "yes"}
    return labels


def stopped(decisions_csv: Path, held_out: set[str]) -> dict[str, str]:
    """transaction_id -> status of every held-out payment that was not approved."""
    with decisions_csv.open(newline="", encoding="utf-8") as f:
        return {
            row["transaction_id"]: row["status"]
            for row in csv.DictReader(f)
            if row["transaction_id"] in held_out and row["status"] != "APPROVED"
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="labelled payments CSV")
    parser.add_argument("--review-threshold", type=float, default=0.01, help="the candidate")
    parser.add_argument("--workdir", type=Path, help="keep the model and decisions here")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="payscore-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.joblib"

    # Settings from the caller's environment would blur the comparison: start from none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    if "PAYSCORE_CACHE_DIR" in os.environ:
        env["PAYSCORE_CACHE_DIR"] = os.environ["PAYSCORE_CACHE_DIR"]
    payscore("train", "--data", str(args.data), "--output", str(model), env=env)
    runs = {
        "model thresholds": (work / "decisions-model.csv", env),
        "candidate": (
            work / "decisions-candidate.csv",
            {**env, "PAYSCORE_REVIEW_THRESHOLD": str(args.review_threshold)},
        ),
    }
    for output, run_env in runs.values():
        common = ["--input", str(args.data), "--model", str(model), "--output", str(output)]
        payscore("score", *common, env=run_env)

    artifact = load_artifact(model)
    test_start = utc(artifact.metadata["training_period"]["test"][0])
    with runs["model thresholds"][0].open(newline="", encoding="utf-8") as f:
        scored = {row["transaction_id"] for row in csv.DictReader(f)}
    fraud = held_out_labels(args.data, test_start, scored)
    n_fraud = sum(fraud.values())
    review = artifact.metadata["thresholds"]["review"]

    print(f"\nHeld-out payments from {test_start.isoformat()}: {len(fraud):,}, {n_fraud} fraud")
    print(f"{'run':<18}{'review at':>10}{'stopped':>9}{'fraud caught':>14}{'genuine stopped':>17}")
    results = []
    thresholds = (review, args.review_threshold)
    for (name, (output, _)), threshold in zip(runs.items(), thresholds, strict=True):
        hits = stopped(output, set(fraud))
        caught = sum(fraud[tx] for tx in hits)
        results.append((caught, len(hits) - caught))
        share = f"{caught}/{n_fraud}"
        print(f"{name:<18}{threshold:>10.4f}{len(hits):>9,}{share:>14}{len(hits) - caught:>17,}")
    (fraud_before, genuine_before), (fraud_after, genuine_after) = results
    print(
        f"candidate against model thresholds: {fraud_after - fraud_before:+d} fraud caught, "
        f"{genuine_after - genuine_before:+,d} genuine payments stopped"
    )
    print(f"\nmodel and decision files: {work}")


if __name__ == "__main__":
    main()
