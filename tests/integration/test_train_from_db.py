"""``payscore train --from-db`` against the real MariaDB: a simulated world stored as the
consumer stores it (every payment decided by the pipeline, each fraud's chargeback a
labels-topic message a week later) trains, on the handbook's periods, exactly the model the
default ``train`` trains on the same world and periods: same metrics, same thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator, training
from payscore.core.model import load_artifact
from tests.cli.test_train_from_db import period_args, store_world

runner = CliRunner()
HANDBOOK = period_args(training.handbook_periods())


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    # The handbook's calendar (137 days from 2018-04-01, through the test week) at a small
    # scale: 150 cards, 1,000 terminals, about 29k payments.
    return simulator.generate_world(n_customers=150, n_terminals=1_000, n_days=137)


def test_train_from_mariadb_equals_the_default_train(world, db_url: str, tmp_path: Path) -> None:
    scorer = tmp_path / "scorer.joblib"
    csv = tmp_path / "world.csv"
    simulator.write_csv(world, csv)
    result = runner.invoke(app, ["train", "--data", str(csv), "--output", str(scorer)])
    assert result.exit_code == 0, result.output
    store_world(db_url, world, load_artifact(scorer))

    out = tmp_path / "from-db.joblib"
    env = {"PAYSCORE_DATABASE_URL": db_url}  # the password stays off the command line
    result = runner.invoke(app, ["train", "--from-db", "--output", str(out), *HANDBOOK], env=env)
    assert result.exit_code == 0, result.output
    assert "test       2018-08-08 .. 2018-08-14" in result.output
    from_db = load_artifact(out).metadata

    artifact, metrics = training.train_default_model(prepared=training.prepare_world(world=world))
    default = artifact.metadata
    assert from_db["metrics"] == default["metrics"] == {k: round(v, 6) for k, v in metrics.items()}
    assert from_db["thresholds"] == default["thresholds"]
    for key in ("train", "validation", "test", "train_payments", "train_frauds", "test_payments"):
        assert from_db["training_period"][key] == default["training_period"][key], key
    assert from_db["training_period"]["source"].startswith("database mysql")
    password = make_url(db_url).password
    assert password and password not in from_db["training_period"]["source"]
