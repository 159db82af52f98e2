"""``payscore demo`` end to end on SQLite, no servers (uses the cached simulated world)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

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
    args = ["demo", "--count", "300", "--model", tiny_model, "--database-url", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "decided 300 payments" in result.output
    assert "fraud caught" in result.output and "payscore dashboard" in result.output
    _check_labels_stored(url, 300)

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "decided 0 payments" in again.output
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
