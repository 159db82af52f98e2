"""``payscore bench --metrics-cost``: the consumer with metrics off and on, on the real services."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app

pytestmark = pytest.mark.integration


def test_bench_metrics_cost_pairs_off_and_on_runs(
    db_url: str,
    kafka_bootstrap: str,
    small_model: str,
    payscore_env: Callable[..., dict[str, str]],
) -> None:
    env = payscore_env(
        database_url=db_url, kafka_bootstrap_servers=kafka_bootstrap, model_path=small_model
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from payscore.cli.app import main; main()",
            "bench",
            "--metrics-cost",
            "--count",
            "1500",
            "--rounds",
            "2",
            "--batch-size",
            "100",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "metrics cost: 1500 payments a run, /metrics scraped every 1 s when on" in out, out
    # One line a round: off and on payments/s, their ratio, off and on CPU, their ratio.
    rounds = re.findall(
        r"^\s+(\d)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+([\d,.]+)\s+([\d,.]+)\s+"
        r"([\d.]+)$",
        out,
        re.MULTILINE,
    )
    assert [r[0] for r in rounds] == ["1", "2"], out
    for _, off, on, ratio, *_ in rounds:
        off_rate, on_rate = float(off.replace(",", "")), float(on.replace(",", ""))
        assert off_rate > 0 and on_rate > 0
        assert float(ratio) == pytest.approx(on_rate / off_rate, abs=0.002)
    assert "payments/s on/off: median" in out and "CPU on/off: median" in out
    assert "one /metrics rendering:" in out  # the "on" runs were scraped


def test_one_benchmark_mode_at_a_time() -> None:
    result = CliRunner().invoke(app, ["bench", "--recovery", "1000", "--metrics-cost"])
    assert result.exit_code == 2
    assert "choose one of --recovery, --metrics-cost and --feature-cost" in result.output
    assert "Traceback" not in result.output
