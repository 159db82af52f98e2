"""``payscore train --review-budget N``: the review threshold is set on the validation period
for N cards a day, printed with the share of frauds caught there and recorded in the model's
metadata; a bad N is one clear line and nothing is trained."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core.model import load_artifact
from tests.cli.test_train_dates import csv as world_csv

runner = CliRunner()
csv = world_csv  # the small world of the dates tests (a module fixture)


def test_the_budget_sets_the_review_threshold_and_is_recorded(csv: Path, tmp_path: Path) -> None:
    plain, budgeted = tmp_path / "plain.joblib", tmp_path / "budget.joblib"
    base = ["train", "--data", str(csv), "--test-start", "2018-06-01"]
    assert runner.invoke(app, [*base, "-o", str(plain)]).exit_code == 0
    result = runner.invoke(app, [*base, "-o", str(budgeted), "--review-budget", "3"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("review budget 3 cards"))
    meta = load_artifact(budgeted).metadata
    chosen = meta["review_budget"]
    assert chosen["cards_per_day"] == 3 and chosen["days"] == 7
    assert 0 < chosen["expected_cards_per_day"] <= 3
    assert f"{chosen['fraud_share_caught']:.1%}" in line
    assert meta["thresholds"]["review"] == chosen["review_threshold"]
    # The decline threshold stays the quantile one; only the review threshold moves.
    before = load_artifact(plain).metadata["thresholds"]
    assert meta["thresholds"]["decline"] == before["decline"]
    assert meta["thresholds"]["review"] != before["review"]
    assert "review_budget" not in load_artifact(plain).metadata


@pytest.mark.parametrize("bad", ["0", "-2", "nan", "5000000"])
def test_a_bad_budget_is_one_line_and_nothing_is_trained(
    csv: Path, tmp_path: Path, bad: str
) -> None:
    out = tmp_path / "m.joblib"
    result = runner.invoke(
        app, ["train", "--data", str(csv), "-o", str(out), "--review-budget", bad]
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--review-budget must be above 0" in lines[0], result.output
    assert not out.exists()
