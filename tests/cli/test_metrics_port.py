"""``--metrics-port``: defined once in cli/common.py, the same on every command that serves."""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from payscore.cli.app import app

runner = CliRunner()
COMMANDS = ["consume", "produce", "replay-dlq"]


def _option(command: str) -> click.Option:
    group = typer.main.get_command(app)
    ctx = click.Context(group)
    cmd = group.get_command(ctx, command)  # type: ignore[attr-defined]
    assert cmd is not None, command
    (option,) = [p for p in cmd.params if "--metrics-port" in p.opts]
    return option


def test_every_serving_command_has_the_same_option() -> None:
    options = [_option(c) for c in COMMANDS]
    first = options[0]
    assert "PAYSCORE_METRICS_PORT" in (first.help or "")
    for option in options[1:]:
        assert option.help == first.help
        assert option.default is None


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("port", ["0", "65536", "nine"])
def test_a_bad_port_is_a_usage_error_before_anything_runs(command: str, port: str) -> None:
    result = runner.invoke(app, [command, "--metrics-port", port])
    assert result.exit_code == 2, result.output
    assert "--metrics-port" in result.output
    assert "Traceback" not in result.output
