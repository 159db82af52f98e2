"""The fraud-count benchmark runs end to end and the two ways agree (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from payscore.dashboard import fraudbench
from payscore.dashboard.bench import RANGES


def test_fraudbench_runs_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/f.db"
    assert fraudbench.main(["--database-url", url, "--rows", "3000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "database: sqlite, 3,000 decisions" in out
    for label in RANGES:
        assert f"\n{label} " in out
