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
    assert list(rows[0]) == ["transaction_id", "score", "status", "reason_codes", "explanation"]
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


def _score(files, tmp_path: Path, *extra: str, model: str = "model"):  # type: ignore[no-untyped-def]
    args = ["score", "-i", str(files["payments"]), "-o", str(tmp_path / "out.csv")]
    return runner.invoke(app, [*args, "--model", str(files[model]), *extra])


def test_metrics_say_which_payments_they_were_computed_on(files, tmp_path: Path) -> None:
    result = _score(files, tmp_path)
    assert result.exit_code == 0, result.output
    n = files["n"]  # every valid row carries a label
    assert (
        f"metrics over {n:,} labelled payments from 2018-04-01 to 2018-04-10 (UTC event dates; "
        "all labelled payments in that period, not filtered for cards already known compromised)"
    ) in result.output
    assert "note:" not in result.output  # this model's metadata names no training period


def test_metrics_period_flags(files, tmp_path: Path) -> None:
    result = _score(files, tmp_path, "--metrics-from", "2018-04-05", "--metrics-to", "2018-04-06")
    assert result.exit_code == 0, result.output
    with (tmp_path / "out.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == files["n"]  # the period limits metrics only
    line = next(x for x in result.output.splitlines() if x.startswith("metrics over"))
    assert "from 2018-04-05 to 2018-04-06" in line
    shown = int(line.split()[2].replace(",", ""))
    assert 0 < shown < files["n"] // 2
    table = result.output[result.output.index("Decisions against labels") :]
    assert (
        sum(
            int(row.split("│")[2].strip().replace(",", ""))
            for row in table.splitlines()
            if row.startswith("│ ") and row.split("│")[1].strip() in STATUSES
        )
        == shown
    )

    empty = _score(files, tmp_path, "--metrics-from", "2030-01-01")
    assert empty.exit_code == 0, empty.output
    assert "no labelled payments from 2030-01-01 .. the end: no metrics" in empty.output
    bad = _score(files, tmp_path, "--metrics-from", "April")
    assert bad.exit_code == 2 and "--metrics-from" in bad.output
    backwards = _score(
        files, tmp_path, "--metrics-from", "2018-04-05", "--metrics-to", "2018-04-01"
    )
    assert backwards.exit_code == 2 and "--metrics-from" in backwards.output


def test_metrics_over_the_models_training_period_are_flagged(files, tmp_path: Path) -> None:
    from payscore.core.model import ModelArtifact, load_artifact

    tiny = load_artifact(files["model"])
    period = {"train": ["2018-03-01", "2018-04-02"], "validation": ["2018-04-03", "2018-04-03"]}
    trained = ModelArtifact(
        tiny.estimator, tiny.feature_names, {**tiny.metadata, "training_period": period}
    )
    save_artifact(trained, tmp_path / "trained.joblib")
    result = _score({**files, "trained": tmp_path / "trained.joblib"}, tmp_path, model="trained")
    assert result.exit_code == 0, result.output
    assert (
        "in the model's training and validation period 2018-03-01 .. 2018-04-03, so these "
        "metrics are optimistic; --metrics-from 2018-04-04 leaves them out" in result.output
    )
    later = _score(
        {**files, "trained": tmp_path / "trained.joblib"},
        tmp_path,
        "--metrics-from",
        "2018-04-04",
        model="trained",
    )
    assert later.exit_code == 0 and "note:" not in later.output


def test_every_row_rejected_is_an_error(files, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(
        "transaction_id,customer_id,terminal_id,amount,currency,event_time\n"
        "x1,c,t,NaN,EUR,2018-04-02T00:00:00+00:00\n"
    )
    args = ["score", "-i", str(src), "-o", str(tmp_path / "o.csv"), "--model", str(files["model"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "line 2: schema: amount" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable payments; all 1 row rejected (1 schema)" in errors[0]
    assert not (tmp_path / "o.csv").exists()


def test_one_rejected_row_is_singular(files, tmp_path: Path) -> None:
    lines = files["payments"].read_text().splitlines()
    src = tmp_path / "one_bad.csv"
    src.write_text("\n".join([lines[0], *lines[1:50], "x1,c,t,NaN,EUR,2018-04-02T00:00:00Z,0"]))
    args = ["score", "-i", str(src), "-o", str(tmp_path / "o.csv"), "--model", str(files["model"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "scored 49 payments" in result.output and "; 1 row rejected;" in result.output
