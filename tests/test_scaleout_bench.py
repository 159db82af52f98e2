"""``payscore bench --consumers N``: its report and its usage errors (no services needed)."""

from __future__ import annotations

from typer.testing import CliRunner

from payscore.bench.scaleout import ScaleoutReport, report_lines
from payscore.cli.app import app


def test_the_report_gives_each_group_size_against_one_consumer_and_the_ceiling() -> None:
    report = ScaleoutReport(count=1000, consumers=2)
    report.rates = {1: [900.0, 1100.0], 2: [1500.0, 1700.0]}
    report.cpu_s = {1: [10.0, 12.0], 2: [20.0, 22.0]}
    report.ceilings = [4000.0, 3000.0, 5000.0]
    lines = report_lines(report)
    assert "database ceiling 4,000 rows/s" in lines[0]
    assert lines[1].startswith("1 consumer(s): 1,000 payments/s (runs 900, 1,100); x1.00")
    assert "0.25 of the ceiling" in lines[1]
    assert lines[2].startswith("2 consumer(s): 1,600 payments/s (runs 1,500, 1,700); x1.60")
    assert "0.40 of the ceiling; CPU 21 s a run" in lines[2]


def test_consumers_runs_alone() -> None:
    result = CliRunner().invoke(app, ["bench", "--consumers", "2", "--metrics-cost"])
    assert result.exit_code == 2
    assert "--consumers runs alone" in result.output
    result = CliRunner().invoke(app, ["bench", "--consumers", "0"])
    assert result.exit_code == 2
