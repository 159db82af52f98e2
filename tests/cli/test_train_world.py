"""``payscore train --world N``: another simulated world, same periods; wrong use is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator
from payscore.errors import InputError

runner = CliRunner()


@pytest.mark.parametrize("world", ["-1", str(simulator.MAX_WORLD + 1), "two"])
def test_a_world_out_of_range_is_a_usage_error(world: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--world", world, "-o", str(tmp_path / "m.joblib")])
    assert result.exit_code == 2
    assert "--world" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.joblib").exists()


def test_a_world_with_another_source_is_a_usage_error(tmp_path: Path) -> None:
    data = tmp_path / "p.csv"
    data.write_text("transaction_id\n")
    result = runner.invoke(app, ["train", "--world", "2", "--data", str(data)])
    assert result.exit_code == 2
    words = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert "not with --data or --from-db" in words


def test_the_world_asked_for_is_the_one_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[int] = []

    def load_world(use_cache: bool = True, world: int = 0) -> None:
        loaded.append(world)
        raise InputError("stop here: no need to train")

    monkeypatch.setattr(simulator, "load_world", load_world)
    result = runner.invoke(app, ["train", "--world", "3"])
    assert result.exit_code == 1
    assert "stop here" in result.output
    assert loaded == [3]
