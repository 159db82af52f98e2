"""``payscore train --from-db`` on SQLite: a world stored as the consumer stores it (decisions
through the pipeline, chargebacks as labels-topic messages) trains exactly the model that
``train --data`` trains on the same payments and periods."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator
from payscore.core.model import ModelArtifact, load_artifact

runner = CliRunner()


def period_args(dates: dict[str, Any]) -> list[str]:
    """``--train-start 2018-05-15 ...`` from {"train_start": "2018-05-15", ...}."""
    return [x for k, v in dates.items() for x in (f"--{k.replace('_', '-')}", str(v))]


PERIODS = period_args(
    {
        "train_start": "2018-05-15",
        "train_end": "2018-05-28",
        "validation_start": "2018-05-29",
        "validation_end": "2018-06-04",
        "test_start": "2018-06-05",
        "test_end": "2018-06-11",
    }
)


def store_world(url: str, df: pd.DataFrame, artifact: ModelArtifact, batch: int = 2_000) -> None:
    """Every payment of ``df`` decided and stored by the pipeline, each fraud's chargeback a
    labels-topic message known 7 days after the payment (as ``payscore demo`` and the
    producer send them)."""
    from payscore.config import Settings
    from payscore.core.schema import payment_to_json
    from payscore.pipeline import Pipeline, RawMessage, build_scorer
    from payscore.store.engine import make_engine
    from payscore.store.initdb import create_schema
    from payscore.store.writer import DecisionWriter
    from payscore.stream.producer import label_message

    settings = Settings(database_url=url)
    db = make_engine(settings)
    try:
        create_schema(db)
        pipeline = Pipeline(
            build_scorer(settings, artifact), DecisionWriter(db), "t", labels_topic="labels"
        )
        payments = simulator.to_payments(df)
        frauds = df["TX_FRAUD"].to_numpy().astype(bool)
        for lo in range(0, len(payments), batch):
            messages: list[Any] = []
            for i in range(lo, min(lo + batch, len(payments))):
                p = payments[i]
                messages.append(RawMessage("payments", 0, i, None, payment_to_json(p)))
                if frauds[i]:
                    known = p.event_time + timedelta(days=7)
                    value = label_message(p.transaction_id, True, known)
                    messages.append(RawMessage("labels", 0, i, None, value))
            _, result = pipeline.process(messages)
            assert result.decided == min(batch, len(payments) - lo)
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, Path]:
    """A 75-day world of 150 cards as a file and a trained model to store it with."""
    root = tmp_path_factory.mktemp("fromdb")
    df = simulator.generate_world(n_customers=150, n_terminals=300, n_days=75)
    path = root / "world.csv"
    simulator.write_csv(df, path)
    model = root / "scorer.joblib"
    result = runner.invoke(app, ["train", "--data", str(path), "--output", str(model)])
    assert result.exit_code == 0, result.output
    return df, path, model


def train(*args: str) -> tuple[str, dict[str, Any]]:
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--output") + 1])
    return result.output, load_artifact(out).metadata


def same_model(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["metrics"] == b["metrics"]
    assert a["thresholds"] == b["thresholds"]
    for key in ("train", "validation", "test", "train_payments", "train_frauds", "test_payments"):
        assert a["training_period"][key] == b["training_period"][key], key


def test_from_db_trains_what_the_file_trains(world, tmp_path: Path) -> None:
    df, path, model = world
    url = f"sqlite:///{tmp_path / 'payscore.db'}"
    store_world(url, df, load_artifact(model))
    output, from_db = train(
        "--from-db", "--database-url", url, "--output", str(tmp_path / "a.joblib"), *PERIODS
    )
    _, from_file = train("--data", str(path), "--output", str(tmp_path / "b.joblib"), *PERIODS)
    same_model(from_db, from_file)
    assert from_db["training_period"]["source"].startswith("database sqlite:///")
    assert "train      2018-05-15 .. 2018-05-28" in output
    assert "test       2018-06-05 .. 2018-06-11" in output
    # Derived periods agree too, and are named as derived in the output.
    output, derived_db = train("--from-db", "--database-url", url, "--output", str(tmp_path / "c"))
    _, derived_file = train("--data", str(path), "--output", str(tmp_path / "d"))
    same_model(derived_db, derived_file)
    assert "(derived)" in output
    assert json.loads(json.dumps(derived_db["training_period"]["derived"]))  # recorded
    # A database stored by an older payscore has no amount_ratio column, and a read-only
    # trainer cannot add it: the replay computes the ratios, here the same model.
    from sqlalchemy import create_engine, inspect, text

    db = create_engine(url)
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE scored_transactions DROP COLUMN amount_ratio"))
        names = {c["name"] for c in inspect(conn).get_columns("scored_transactions")}
    db.dispose()
    assert "amount_ratio" not in names
    _, older = train("--from-db", "--database-url", url, "--output", str(tmp_path / "e"))
    same_model(older, derived_file)


def test_an_empty_database_is_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert runner.invoke(app, ["initdb", "--database-url", url]).exit_code == 0
    result = runner.invoke(app, ["train", "--from-db", "--database-url", url, "-o", "m"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no stored payments" in lines[0], result.output


def test_from_db_and_data_together_is_a_usage_error(world) -> None:
    _, path, _ = world
    result = runner.invoke(app, ["train", "--from-db", "--data", str(path)])
    assert result.exit_code == 2
    assert "--data FILE or --from-db" in result.output
