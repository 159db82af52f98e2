"""``payscore consume`` without a reachable broker: one clean line, like the other commands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core.model import save_artifact
from tests.core.test_scoring import tiny_world, train_tiny_model


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_consume_without_broker_prints_one_line_and_no_client_logs(tmp_path: Path) -> None:
    model = tmp_path / "model.joblib"
    save_artifact(train_tiny_model(*tiny_world()), model)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert CliRunner().invoke(app, ["initdb", "--database-url", url]).exit_code == 0
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    done = subprocess.run(
        [sys.executable, "-c", "from payscore.cli.app import main; main()", "consume"]
        + ["--bootstrap-servers", f"127.0.0.1:{port}", "--database-url", url]
        + ["--model", str(model), "--max-messages", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        f"error: cannot reach Kafka at 127.0.0.1:{port}: "
    ), done.stderr
    assert f"['127.0.0.1:{port}']" in lines[0]  # kafka-python's list, brackets kept
