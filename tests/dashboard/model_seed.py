"""A champion, a challenger shadow-scoring it, and labelled decisions: the Model tab's world.

The expected figures are recomputed here with the core's own functions from the rows as
seeded, never read back through the page's queries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert

from payscore.core.budget import at_threshold
from payscore.core.metrics import evaluate
from payscore.core.protocol import LABEL_DELAY_DAYS
from payscore.store.schema import fraud_labels, models, scored_transactions

CHAMPION, CHALLENGER, RETIRED = "model-champ", "model-chall", "model-old"
THRESHOLDS = {
    CHAMPION: {"review": 0.6, "decline": 0.9},
    CHALLENGER: {"review": 0.5, "decline": 0.95},
}


@dataclass(frozen=True)
class ModelWorld:
    rows: pd.DataFrame  # customer_id, event_time, score, challenger_score, is_fraud, labelled
    champion: dict[str, float]
    challenger: dict[str, float]
    load: float  # champion's cards a day at its review threshold (labelled payments)
    caught: float | None

    @property
    def labelled(self) -> pd.DataFrame:
        return self.rows[self.rows["labelled"]]


def _registry_row(version: str, status: str, now: datetime, auc: float) -> dict[str, Any]:
    return {
        "version": version,
        "status": status,
        "artifact_path": f"/models/{version}.joblib",
        "artifact_digest": "0" * 64,
        "trained_at": now - timedelta(days=3),
        "trained_by": "tester",
        "registered_at": now - timedelta(days=3),
        "status_at": now - timedelta(hours=2 if status == "champion" else 1),
        "status_by": "tester",
        "replaced": None,
        "periods_json": json.dumps({"test": ["2018-08-08", "2018-08-14"]}),
        "metrics_json": json.dumps({"auc_roc": auc}),
        "thresholds_json": json.dumps(THRESHOLDS.get(version, {"review": 0.5, "decline": 0.9})),
        "features_json": json.dumps(["amount"]),
    }


def seed_models(engine: Engine, now: datetime, n: int = 3_000, seed: int = 5) -> ModelWorld:
    """``n`` decisions of the champion, shadow-scored by the challenger, decided in the last
    half hour, over 20 days of event time; frauds carry a chargeback label."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    champion = np.clip(rng.normal(0.3, 0.15, n) + fraud * rng.normal(0.35, 0.2, n), 0, 1)
    challenger = np.clip(rng.normal(0.3, 0.15, n) + fraud * rng.normal(0.5, 0.15, n), 0, 1)
    start = now - timedelta(days=20)
    events = [start + timedelta(seconds=float(s)) for s in np.sort(rng.random(n)) * 20 * 86400]
    customers = [f"c{int(c):04d}" for c in rng.integers(0, 400, n)]
    decided = [now - timedelta(seconds=1800 - 1800 * i / n) for i in range(n)]
    rows, labels = [], []
    for i in range(n):
        tx = f"mtx{i:06d}"
        rows.append(
            {
                "transaction_id": tx,
                "customer_id": customers[i],
                "terminal_id": f"t{i % 97}",
                "amount": 10.0 + i % 50,
                "currency": "EUR",
                "event_time": events[i],
                "received_at": decided[i],
                "scored_at": decided[i],
                "score": float(champion[i]),
                "prediction": int(champion[i] >= 0.6),
                "status": "APPROVED",
                "reason_codes": "",
                "model_version": CHAMPION,
                "challenger_version": CHALLENGER,
                "challenger_score": float(challenger[i]),
                "challenger_status": "APPROVED",
            }
        )
        if fraud[i]:
            labels.append(
                {
                    "transaction_id": tx,
                    "is_fraud": True,
                    "known_at": events[i] + timedelta(days=2),
                    "source": "stream",
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(scored_transactions), rows)
        conn.execute(insert(fraud_labels), labels)
        conn.execute(
            insert(models),
            [
                _registry_row(CHAMPION, "champion", now, 0.81),
                _registry_row(CHALLENGER, "challenger", now, 0.88),
                _registry_row(RETIRED, "retired", now, 0.75),
            ],
        )
    horizon = max(events) - timedelta(days=LABEL_DELAY_DAYS)
    frame = pd.DataFrame(
        {
            "customer_id": customers,
            "event_time": pd.to_datetime(events),
            "score": champion,
            "challenger_score": challenger,
            "is_fraud": fraud.astype(int),
            "labelled": fraud | (np.asarray(events) < horizon),
        }
    )
    lab = frame[frame["labelled"]]
    args = (
        lab["event_time"].dt.floor("D").to_numpy(),
        lab["customer_id"].to_numpy(),
        lab["is_fraud"].to_numpy(),
    )
    t = THRESHOLDS[CHAMPION]
    load, caught = at_threshold(*args, lab["score"].to_numpy(), t["review"], t["decline"])
    return ModelWorld(
        frame,
        evaluate(lab["is_fraud"].to_numpy(), lab["score"].to_numpy(), args[0], args[1]),
        evaluate(lab["is_fraud"].to_numpy(), lab["challenger_score"].to_numpy(), args[0], args[1]),
        load,
        caught,
    )
