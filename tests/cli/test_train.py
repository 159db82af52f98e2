"""``payscore train`` on a small labelled CSV, and its clean errors."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator
from payscore.core.model import load_artifact

runner = CliRunner()


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    # A small world of its own: 200 customers, 400 terminals, 60 days (~20k payments).
    df = simulator.generate_world(n_customers=200, n_terminals=400, n_days=60)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    simulator.write_csv(df, path)
    return path


def test_train_on_csv(small_csv, tmp_path):
    out = tmp_path / "model.joblib"
    result = runner.invoke(app, ["train", "--data", str(small_csv), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "AUC ROC" in result.output
    assert "Average precision" in result.output
    assert "Card Precision@100" in result.output
    artifact = load_artifact(out)
    assert artifact.version in result.output
    assert re.search(r"AUC ROC\s*│?\s*0\.\d{4}", result.output)
    assert artifact.metadata["training_period"]["source"] == "csv small.csv"


def test_baseline_flag_on_csv(small_csv, tmp_path):
    out = tmp_path / "baseline.joblib"
    args = ["train", "--data", str(small_csv), "--output", str(out), "--baseline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "RandomForestClassifier" in load_artifact(out).metadata["model_type"]


def test_missing_data_file_is_one_clean_line(tmp_path):
    missing = tmp_path / "nope.csv"
    result = runner.invoke(app, ["train", "--data", str(missing), "--output", str(tmp_path / "m")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.csv" in lines[0]
    assert "Traceback" not in result.output


def test_csv_without_required_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,amount\n1,2.00\n")
    result = runner.invoke(app, ["train", "--data", str(bad), "--output", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "lacks column" in result.output
