"""``payscore score``: a backtest on a small simulated file, with labels, and clean errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core.model import save_artifact
from payscore.core.simulator import generate_world, write_csv
from tests.core.test_scoring import tiny_world, train_tiny_model

runner = CliRunner()
STATUSES = {"APPROVED", "REVIEW", "DECLINED"}


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PAYSCORE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny model, a labelled payments CSV with 3 bad rows, and a labels file."""
    root = tmp_path_factory.mktemp("score")
    save_artifact(train_tiny_model(*tiny_world()), root / "model.joblib")
    df = generate_world(n_customers=60, n_terminals=120, n_days=10)
    df = df[df["TX_AMOUNT"] > 0]  # the generator can round an amount to 0.00: not a payment
    good = root / "good.csv"
    write_csv(df, good)
    lines = good.read_text().splitlines()
    bad_rows = [
        "x1,c,t,NaN,EUR,2018-04-02T00:00:00+00:00,0",  # amount
        "x2,c,t,5.00,EUR,2018-04-02T00:00:00,0",  # naive time
        lines[1],  # duplicate transaction id
    ]
    # out of event-time order on purpose: the backtest must sort
    mixed = root / "payments.csv"
    mixed.write_text("\n".join([lines[0], *reversed(lines[1:]), *bad_rows]) + "\n")
    labels = root / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["transaction_id", "is_fraud"])
        for line in lines[1:]:
            cells = line.split(",")
            writer.writerow([cells[0], cells[6]])
    bad_labels = root / "bad_labels.csv"
    bad_labels.write_text("transaction_id,is_fraud\n0,maybe\n")
    return {
        "bad_labels": bad_labels,
        "model": root / "model.joblib",
        "payments": mixed,
        "labels": labels,
        "n": len(df),
    }  # type: ignore[dict-item]


def read_output(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_backtest_with_an_is_fraud_column(files, tmp_path: Path) -> None:
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    result = runner.invoke(
        app,
        [
            "score",
            "--input",
            str(files["payments"]),
            "--output",
            str(out),
            "--model",
            str(files["model"]),
            "--rejects",
            str(rejects),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_output(out)
    assert len(rows) == files["n"]  # every valid row, none of the 3 bad ones
    assert list(rows[0]) == ["transaction_id", "score", "status", "reason_codes"]
    assert {r["status"] for r in rows} <= STATUSES and "APPROVED" in {r["status"] for r in rows}
    assert len({r["transaction_id"] for r in rows}) == len(rows)
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert "AUC ROC" in result.output and "card precision@100" in result.output
    assert "Decisions against labels" in result.output
    assert "3 rows rejected" in result.output
    bad = read_output(rejects)
    assert [(r["kind"], r["field"]) for r in bad] == [
        ("schema", "amount"),
        ("schema", "event_time"),
        ("duplicate", "transaction_id"),
    ]
    assert int(bad[0]["line"]) == files["n"] + 2


def test_output_is_in_event_time_order_and_matches_a_labels_file(files, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            "score",
            "-i",
            str(files["payments"]),
            "-o",
            str(out),
            "--model",
            str(files["model"]),
            "--labels",
            str(files["labels"]),
        ],
    )
    assert result.exit_code == 0, result.output
    ids = [int(r["transaction_id"]) for r in read_output(out)]
    assert ids == sorted(ids)  # simulator ids follow event time
    assert "AUC ROC" in result.output


def test_json_lines_input(files, tmp_path: Path) -> None:
    with files["payments"].open(newline="") as f:
        rows = list(csv.DictReader(f))[:200]
    src = tmp_path / "payments.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "[1]\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["score", "--input", str(src), "--output", str(out), "--model", str(files["model"])]
    )
    assert result.exit_code == 0, result.output
    assert len(read_output(out)) == 200
    assert "line 201: json" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "missing.csv", "--output", "o.csv"], "does not exist"),
        (["--input", "{payments}", "--output", "o.csv", "--model", "nope.joblib"], "no model"),
        (["--input", "{model}", "--output", "o.csv"], "not a payments file"),
        (["--input", "{payments}", "--output", "no/such/dir/o.csv"], "does not exist"),
        (["--input", "{payments}", "--output", "o.csv", "--labels", "{model}"], "labels file"),
        (["-i", "{payments}", "-o", "o.csv", "--labels", "{bad_labels}"], "line 2: is_fraud"),
    ],
)
def test_clean_errors(files, args: list[str], message: str) -> None:
    args = [a.format(**files) for a in args]
    if "--model" not in args:
        args += ["--model", str(files["model"])]
    result = runner.invoke(app, ["score", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not Path("o.csv").exists()


def test_wrong_flag_is_a_usage_error(files) -> None:
    result = runner.invoke(app, ["score", "--inptu", str(files["payments"])])
    assert result.exit_code == 2
    assert "No such option" in result.output
