"""``payscore replay-dlq``'s progress display: bars on a terminal, nothing extra in a pipe."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from payscore.cli import replay as replay_cli
from payscore.cli.app import app
from payscore.stream.replay import READING, SENDING, ReplayResult

runner = CliRunner()


@pytest.fixture
def fake_replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A replay of 1,200 dead letters that reports its progress as the real one does."""
    monkeypatch.chdir(tmp_path)

    def replay(
        settings: Any, filters: Any, *, dry_run: bool, progress: Any, result: ReplayResult
    ) -> ReplayResult:
        for done in (0, 600, 1200):
            progress(READING, done, 1200)
        progress(SENDING, 1200, 1200)
        result.dlq_topic = settings.dlq_topic  # the command reports from the result it passed
        return result

    monkeypatch.setattr(replay_cli, "replay_dead_letters", replay)


def test_progress_bar_on_a_terminal(fake_replay: None, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(replay_cli, "err_console", terminal)
    result = runner.invoke(app, ["replay-dlq"])
    assert result.exit_code == 0, result.output
    drawn = screen.getvalue()
    assert SENDING in drawn and "1,200/1,200 dead letters" in drawn
    assert "no new dead letters in payments.dlq" in result.output


def test_no_bar_when_not_a_terminal(fake_replay: None) -> None:
    result = runner.invoke(app, ["replay-dlq"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        "0 replayed, 0 skipped by filter, 0 parked",
        "no new dead letters in payments.dlq",
    ]
