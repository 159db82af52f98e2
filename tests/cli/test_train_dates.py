"""``payscore train --data`` by dates: the periods used are printed (derived ones named) and
recorded; bad dates and impossible periods are one clear line, exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator
from payscore.core.model import load_artifact

runner = CliRunner()


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df = simulator.generate_world(n_customers=150, n_terminals=300, n_days=70)
    path = tmp_path_factory.mktemp("dates") / "w.csv"
    simulator.write_csv(df, path)
    return path


def test_given_and_derived_periods_are_printed_and_recorded(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.joblib"
    args = ["train", "--data", str(csv), "-o", str(out), "--test-start", "2018-06-01"]
    result = runner.invoke(app, [*args, "--train-start", "2018-05-10"])
    assert result.exit_code == 0, result.output
    assert "train      2018-05-10 .. 2018-05-24 (derived)" in result.output
    assert "validation 2018-05-25 (derived) .. 2018-05-31 (derived)" in result.output
    assert "test       2018-06-01 .. 2018-06-07 (derived)" in result.output
    period = load_artifact(out).metadata["training_period"]
    assert period["train"] == ["2018-05-10", "2018-05-24"]
    assert period["label_cutoff"] == "2018-06-01"
    assert "train_start" not in period["derived"] and "train_end" in period["derived"]


def test_a_short_file_says_its_warm_up_was_shortened(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    simulator.write_csv(simulator.generate_world(n_customers=60, n_terminals=120, n_days=30), path)
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "note: warm-up shortened to 8 days: the data covers only 30 days" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--test-end", "2018-13-01"], "--test-end: '2018-13-01' is not a date"),
        (["--train-end", "2018-05-30", "--test-start", "2018-06-02"], "7-day label delay"),
        (
            ["--train-end", "2018-05-20", "--validation-start", "2018-05-18"],
            "the train and validation periods overlap",
        ),
        (["--test-start", "2019-01-01"], "outside the data"),
    ],
)
def test_bad_periods_are_one_line(csv: Path, tmp_path: Path, args: list, message: str) -> None:
    out = tmp_path / "m.joblib"
    result = runner.invoke(app, ["train", "--data", str(csv), "-o", str(out), *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    ("blank", "message"),
    [
        ("test_frauds", "the test period needs both fraudulent and genuine payments"),
        ("train_labels", "the training period 2018-05-10 .. 2018-05-24 has no labelled"),
    ],
)
def test_periods_without_what_they_need_are_one_line(
    tmp_path: Path, blank: str, message: str
) -> None:
    df = simulator.generate_world(n_customers=150, n_terminals=300, n_days=70)
    path = tmp_path / "w.csv"
    simulator.write_csv(df, path)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines[1:], start=1):
        when = line.split(",")[5]
        if blank == "test_frauds" and when >= "2018-06-01":
            lines[i] = line.rsplit(",", 1)[0] + ",0"
        if blank == "train_labels" and "2018-05-10" <= when < "2018-05-25":
            lines[i] = line.rsplit(",", 1)[0] + ","
    path.write_text("\n".join(lines) + "\n")
    args = ["--train-start", "2018-05-10", "--test-start", "2018-06-01"]
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m"), *args])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
