"""``payscore train --data`` on a user's file with bad rows: skipped and listed like ``score``
(file line, column, reason), never a traceback; one clear line when nothing is usable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core.model import load_artifact
from payscore.core.simulator import generate_world, write_csv
from tests.core.test_paymentfile import CATALOGUE, HEADER

runner = CliRunner()
BAD_AT = 1002  # the first bad row's file line: "position 1000" in pandas' words


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """~1,600 simulated payments with the bad-row catalogue from line 1002 on."""
    root = tmp_path_factory.mktemp("train")
    df = generate_world(n_customers=50, n_terminals=100, n_days=30)
    df = df[df["TX_AMOUNT"] > 0]
    good = root / "good.csv"
    write_csv(df, good)
    lines = good.read_text().splitlines()
    bad = [text for _, text, field in CATALOGUE if field != "ok"]
    cut = BAD_AT - 1  # lines before the first bad one, header included
    path = root / "payments.csv"
    with path.open("w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write("\n".join([*lines[:cut], *bad, *lines[cut:]]) + "\n")
    return path, list(range(BAD_AT, BAD_AT + len(bad)))


def test_bad_rows_are_skipped_and_listed_with_their_file_lines(data, tmp_path: Path) -> None:
    path, bad_lines = data
    out, rejects = tmp_path / "model.joblib", tmp_path / "rejects.csv"
    args = ["train", "--data", str(path), "--output", str(out), "--rejects", str(rejects)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "OutOfBounds" not in result.output
    assert f"line {BAD_AT}: schema: event_time: Input should have timezone info" in result.output
    assert f"line {BAD_AT + 1}: schema: event_time: year must be between 1971 and 2099" in (
        result.output
    )
    assert f"{len(bad_lines)} rows of {path} rejected (not trained on)" in result.output
    assert "AUC ROC" in result.output
    with rejects.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == bad_lines
    by_line = {int(r["line"]): r for r in rows}
    assert by_line[BAD_AT + 2]["field"] == "amount"  # inf
    assert by_line[BAD_AT + 3]["field"] == "amount"  # 1e308
    assert by_line[BAD_AT + 9]["message"] == "customer_id: is required"  # an empty value
    period = load_artifact(out).metadata["training_period"]
    assert period["rejected_rows"] == len(bad_lines)
    assert period["source"] == "csv payments.csv"


def test_progress_is_not_drawn_into_non_terminal_output(data, tmp_path: Path) -> None:
    path, _ = data
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "computing features" not in result.output
    assert "\x1b[" not in result.output  # no cursor movements in a log


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_nothing_usable_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\nx,c,t,inf,EUR,2018-04-02T00:00:00Z,0\n")
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m")])
    line = _one_error_line(result)
    assert "no usable payments; all 1 row rejected (1 schema)" in line
    assert "line 2: schema: amount" in result.output


def test_a_file_that_is_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"transaction_id,client_\xe9\n1,2\n")
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m")])
    line = _one_error_line(result)
    assert "is not UTF-8 text" in line and "codec" not in line


def test_too_few_labelled_rows(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text(f"{HEADER}\na,c,t,1.00,EUR,2018-04-02T00:00:00Z,0\n")
    result = runner.invoke(app, ["train", "--data", str(path), "-o", str(tmp_path / "m")])
    assert "has 1 usable labelled row; at least 100 are needed" in _one_error_line(result)


def test_rejects_needs_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--rejects", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "--rejects" in result.output
