"""``payscore demo`` end to end on SQLite, no servers (uses the cached simulated world)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import numpy as np
import pytest
from rich.console import Console
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from payscore.cli import demo
from payscore.cli.app import app
from payscore.core import protocol, simulator
from payscore.dashboard import queries as q
from payscore.dashboard.figures import TimeRange
from payscore.store.schema import fraud_labels, scored_transactions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from sklearn.dummy import DummyClassifier

    from payscore.core import simulator, training
    from payscore.core.model import ModelArtifact, save_artifact

    world = simulator.generate_world(n_customers=30, n_terminals=60, n_days=10)
    history = training.History.from_world(world)
    engine, X = training.compute_features(history)
    estimator = DummyClassifier(strategy="prior").fit(X, history.labels)
    artifact = ModelArtifact(
        estimator, engine.feature_names, {"thresholds": {"review": 0.5, "decline": 0.9}}
    )
    path = tmp_path_factory.mktemp("m") / "m.joblib"
    save_artifact(artifact, path)
    return str(path)


def test_demo_decides_and_is_idempotent(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "--count", "300", "--batch-size", "50", "--model", tiny_model]
    args += ["--database-url", url]
    terminal = io.StringIO()  # the progress bars go to stderr, here a terminal
    monkeypatch.setattr(demo, "err_console", Console(file=terminal, force_terminal=True))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "decided 300 payments" in result.output
    assert "fraud caught" in result.output and "payscore dashboard" in result.output
    _check_labels_stored(url, 300)
    _check_progress_bars(terminal.getvalue(), result.output)

    monkeypatch.undo()  # CliRunner's stderr is no terminal, like a CI log: no bars
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "decided 0 payments" in again.output
    assert "\x1b[" not in again.output and "━" not in again.output
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(scored_transactions)).scalar() == 300
    engine.dispose()


def _check_labels_stored(url: str, count: int) -> None:
    """Every fraud of the streamed slice is in fraud_labels, known a week after its payment,
    so the dashboard's fraud rate right after the demo is the slice's real one."""
    world = simulator.load_world()
    start = int(np.searchsorted(world["TX_TIME_DAYS"].to_numpy(), protocol.TEST_END_DAY))
    part = world.iloc[start : start + count]
    frauds = {
        p.transaction_id: p.event_time
        for p, f in zip(simulator.to_payments(part), part["TX_FRAUD"].to_numpy(), strict=True)
        if f
    }
    assert frauds, "the slice should hold some fraud"
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(select(fraud_labels)).all()
        headline = q.headline(conn, TimeRange(None, None))
    engine.dispose()
    assert {r.transaction_id for r in stored} == set(frauds)
    for r in stored:
        assert (r.is_fraud, r.source) == (True, "stream")
        known = frauds[r.transaction_id] + timedelta(days=7)
        assert r.known_at == known.replace(tzinfo=None)
    assert headline.fraud_labelled == len(frauds)
    assert headline.fraud_rate == pytest.approx(len(frauds) / count)


def _check_progress_bars(shown: str, output: str) -> None:
    """On a terminal, the feature warm-up and the stream each draw a bar with counts and a
    rate (the demo was silent for the ~53 s of feature computation)."""
    warm = re.search(r"warming feature state on ([\d,]+) earlier payments", output)
    assert warm, output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "computing features" in plain and f"{warm.group(1)}/{warm.group(1)} payments" in plain
    assert "streaming payments" in plain and "300/300 payments" in plain
    assert re.search(r"\d+/300 payments +[\d,]+/s", plain), plain[-2000:]


def test_training_stages_are_single_lines_without_a_terminal(capsys):
    """In a CI log the minutes of training show as one line per stage, with no redraws."""
    assert not demo.err_console.is_terminal
    with demo._stages(announce=True) as progress:
        for done in (0, 500, 1_000):
            progress("computing features", done, 1_000)
        progress("fitting the model", 0, None)
    with demo._stages() as progress:
        progress("streaming payments", 1, 2)  # announced by the demo's own header line
    assert capsys.readouterr().out.splitlines() == [
        "  computing features...",
        "  fitting the model...",
    ]
