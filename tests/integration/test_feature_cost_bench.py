"""``payscore bench --feature-cost``: one consumer with explanations or a challenger off and
on, on the real services; the "on" runs really stored what the feature adds."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from tests.integration.test_explanations_stored import tree_model  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


EXPLAIN_TITLE = "explanations cost: 1200 payments a run, 3 reasons a decision when on"
CHALLENGER_TITLE = "challenger cost: 1200 payments a run, shadow-scored by a second copy"


@pytest.mark.parametrize(
    ("feature", "title", "column"),
    [
        ("explain", EXPLAIN_TITLE, "explanation"),
        ("challenger", CHALLENGER_TITLE, "challenger_version"),
    ],
)
def test_bench_feature_cost_pairs_off_and_on_runs(
    db_url: str,
    kafka_bootstrap: str,
    tree_model: str,  # noqa: F811 - the imported fixture
    payscore_env: Callable[..., dict[str, str]],
    feature: str,
    title: str,
    column: str,
) -> None:
    env = payscore_env(
        database_url=db_url, kafka_bootstrap_servers=kafka_bootstrap, model_path=tree_model
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from payscore.cli.app import main; main()",
            "bench",
            "--feature-cost",
            feature,
            "--count",
            "1200",
            "--rounds",
            "2",
            "--batch-size",
            "100",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert title in out, out
    rounds = re.findall(
        r"^\s+(\d)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+([\d,.]+)\s+([\d,.]+)\s+([\d.]+)$",
        out,
        re.MULTILINE,
    )
    assert [r[0] for r in rounds] == ["1", "2"], out
    for _, off, on, ratio, *_ in rounds:
        off_rate, on_rate = float(off.replace(",", "")), float(on.replace(",", ""))
        assert off_rate > 0 and on_rate > 0
        assert float(ratio) == pytest.approx(on_rate / off_rate, abs=0.002)
    assert "payments/s on/off: median" in out and "CPU on/off: median" in out
    # Every decision of the two "on" runs carries the feature's column, none of the "off" runs.
    assert f"decisions stored with {column} set: 2,400 in the on runs, 0 in the off runs" in out


def test_a_bad_feature_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "--feature-cost", "nothing"])
    assert result.exit_code == 2
    assert "expected one of explain, challenger" in result.output
    assert "Traceback" not in result.output
    both = CliRunner().invoke(app, ["bench", "--metrics-cost", "--feature-cost", "explain"])
    assert both.exit_code == 2 and "choose one of" in both.output
