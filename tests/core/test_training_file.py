"""Training on a user's file: rows without a label shape the features but are not learned
from or tested on; progress is reported with counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from payscore.core import training
from payscore.core.simulator import generate_world, write_csv


def test_blank_labels_feed_features_but_are_not_learned_from(tmp_path: Path) -> None:
    df = generate_world(n_customers=50, n_terminals=100, n_days=30)
    df = df[df["TX_AMOUNT"] > 0]
    path = tmp_path / "p.csv"
    write_csv(df, path)
    lines = path.read_text().splitlines()
    # Blank the label of every fifth row: a payment whose outcome is not known yet.
    lines[1::5] = [line.rsplit(",", 1)[0] + "," for line in lines[1::5]]
    path.write_text("\n".join(lines) + "\n")

    data = training.read_history(path)
    labels = data.history.labels
    assert (labels == -1).sum() == len(lines[1::5]) and data.labelled == len(labels) - len(
        lines[1::5]
    )
    calls: list[tuple[str, int, int | None]] = []
    artifact, _ = training.train_on_file(data, lambda *a: calls.append(a))

    n = len(labels)
    period = artifact.metadata["training_period"]
    # By dates (docs/model.md): labelled payments of the training days after the warm-up.
    day = np.array([d.date().isoformat() for d in pd.to_datetime(data.history.times, unit="s")])
    warm = pd.Timestamp(period["warm_up_until"]).timestamp()
    train = (day >= period["train"][0]) & (day <= period["train"][1])
    train &= (labels >= 0) & (data.history.times >= warm)
    assert 0 < period["train_payments"] == int(train.sum())
    assert period["train_frauds"] == int((labels[train] == 1).sum())
    assert period["rejected_rows"] == 0

    features = [c for c in calls if c[0] == "computing features"]
    assert features[-1] == ("computing features", n, n)
    assert any(stage.startswith("fitting the model on") for stage, _, _ in calls)


def test_compute_features_gives_the_engine_only_known_labels() -> None:
    history = training.History(
        ["a", "b"],
        ["c1", "c1"],
        ["t1", "t1"],
        np.array([5.0, 6.0]),
        np.array([0.0, 60.0]),
        np.array([1, -1]),
    )
    engine, _ = training.compute_features(history)
    fraud_at = engine.snapshot()["terminals"]["t1"][4]
    assert fraud_at[0] is not None and fraud_at[1] is None  # "b" is not taken as genuine fraud
