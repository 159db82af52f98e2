"""CLI checks of produce / replay-dlq / bench: bad flag values and an unreachable broker."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from tests.conftest import make_payscore_env

runner = CliRunner()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def env(tmp_path):
    return make_payscore_env(
        kafka_bootstrap_servers=f"127.0.0.1:{_dead_port()}",
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
    )


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["produce", "--rate", "-1"], "--rate"),
        (["produce", "--bad-rate", "1.5"], "--bad-rate"),
        (["produce", "--duplicate-rate", "-0.1"], "--duplicate-rate"),
        (["produce", "--count", "0"], "--count"),
        (["produce", "--partitions", "0"], "--partitions"),
        (["produce", "--start", "yesterday"], "--start"),
        (["replay-dlq", "--kind", "nonsense"], "--kind"),
        (["replay-dlq", "--since", "soon"], "--since"),
        (["replay-dlq", "--limit", "0"], "--limit"),
        (["replay-dlq", "--since", "2024-02-01", "--until", "2024-01-01"], "--since"),
        (["bench", "--count", "0"], "--count"),
        (["bench", "--batch-size", "0"], "--batch-size"),
        (["bench", "--rate", "-5"], "--rate"),
        (["bench", "--load-generator", "rdkafka"], "--load-generator"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(env, args, flag):
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert flag in result.output


def test_missing_file_is_one_line_error(env, tmp_path):
    result = runner.invoke(app, ["produce", "--from", str(tmp_path / "none.csv")], env=env)
    assert result.exit_code == 1
    assert "none.csv" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["produce", "--count", "5"], ["replay-dlq"]])
def test_unreachable_broker_is_one_line_error(env, command):
    result = runner.invoke(app, command, env=env)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach Kafka at 127.0.0.1:" in errors[0]
    assert "Traceback" not in result.output
