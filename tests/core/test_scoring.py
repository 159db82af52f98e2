"""The Scorer with a real (tiny) scikit-learn model trained on simulated payments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from payscore.core.decision import APPROVED, DECLINED, REVIEW, Policy
from payscore.core.features import FeatureEngine
from payscore.core.model import ModelArtifact
from payscore.core.schema import Payment
from payscore.core.scoring import Scorer, engine_for, engine_windows
from payscore.core.simulator import generate_world, to_payments
from payscore.errors import ConfigError

MODEL_FEATURES = (
    "amount",
    "is_night",
    "customer_nb_tx_1day",
    "customer_avg_amount_7day",
    "terminal_risk_7day",
    "terminal_risk_30day",
    "customer_nb_tx_60s",
)
THRESHOLDS = {"review": 0.5, "decline": 0.9}
STOCK = {
    "review_threshold": None,
    "decline_threshold": None,
    "velocity_max_payments": 5,
    "velocity_window_seconds": 3600,
    "amount_review_limit": 1000.0,
    "amount_decline_limit": 10_000.0,
}


def tiny_world() -> tuple[list[Payment], dict[str, bool]]:
    """About 3,700 simulated payments (handbook generator, small world) and their labels."""
    df = generate_world(n_customers=100, n_terminals=200, n_days=20)
    df = df[df["TX_AMOUNT"] > 0]  # the generator can round an amount to 0.00: not a payment
    payments = to_payments(df)
    labels = {str(t): bool(f) for t, f in zip(df["TRANSACTION_ID"], df["TX_FRAUD"], strict=True)}
    return payments, labels


def train_tiny_model(payments: list[Payment], labels: dict[str, bool]) -> ModelArtifact:
    engine = FeatureEngine()
    X = engine.transform(payments)
    y = np.array([labels[p.transaction_id] for p in payments], dtype=np.int64)
    cols = [engine.feature_names.index(n) for n in MODEL_FEATURES]
    estimator = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    estimator.fit(X[:, cols], y)
    return ModelArtifact(
        estimator, MODEL_FEATURES, {"thresholds": THRESHOLDS, "model_type": "hgb-test"}
    )


@pytest.fixture(scope="module")
def world() -> tuple[list[Payment], dict[str, bool]]:
    return tiny_world()


@pytest.fixture(scope="module")
def artifact(world: tuple[list[Payment], dict[str, bool]]) -> ModelArtifact:
    return train_tiny_model(*world)


def scorer(artifact: ModelArtifact, **overrides: object) -> Scorer:
    return Scorer.from_settings_values(artifact, None, **{**STOCK, **overrides})  # type: ignore[arg-type]


def pay(tx: str, minutes: float, amount: str = "20.00", customer: str = "c1") -> Payment:
    return Payment(
        transaction_id=tx,
        customer_id=customer,
        terminal_id="t1",
        amount=Decimal(amount),
        currency="EUR",
        event_time=datetime(2018, 5, 1, 12, tzinfo=timezone.utc) + timedelta(minutes=minutes),
    )


def test_batch_equals_one_by_one(world, artifact) -> None:
    history, payments = world[0][:1000], world[0][1000:1250]
    batch, single = scorer(artifact), scorer(artifact)
    for s in (batch, single):  # the same warm state: a week of history each
        for start in range(0, len(history), 500):
            s.score_batch(history[start : start + 500])
    together = batch.score_batch(payments)
    one_by_one = [d for p in payments for d in single.score_batch([p])]
    assert together == one_by_one
    assert {d.status for d in together} >= {APPROVED, REVIEW}


def test_scores_are_deterministic_and_in_range(world, artifact) -> None:
    payments = world[0][:1000]
    first = scorer(artifact).score_batch(payments)
    second = scorer(artifact).score_batch(payments)
    assert first == second
    assert all(0.0 <= d.score <= 1.0 for d in first)
    assert all(d.model_version == artifact.version for d in first)
    assert [d.transaction_id for d in first] == [p.transaction_id for p in payments]


def test_model_separates_fraud(world, artifact) -> None:
    payments, labels = world
    decisions = scorer(artifact).score_batch(payments)
    fraud = np.array([labels[d.transaction_id] for d in decisions])
    scores = np.array([d.score for d in decisions])
    assert scores[fraud].mean() > scores[~fraud].mean() + 0.3


def test_velocity_rule_through_the_engine(artifact) -> None:
    s = scorer(artifact, review_threshold=1.0, decline_threshold=1.0)
    decisions = s.score_batch([pay(f"v{i}", minutes=5 * i) for i in range(7)])
    assert [d.status for d in decisions] == [APPROVED] * 5 + [REVIEW] * 2
    assert decisions[5].reasons == ("VELOCITY_1H",)
    # an hour after the first payment, the window has moved on
    later = s.score_batch([pay("v7", minutes=61)])
    assert later[0].status == REVIEW  # 5..61 min: payments 1-6 plus this one = 7 > 5
    far = s.score_batch([pay("v8", minutes=200)])
    assert far[0].status == APPROVED


def test_amount_rules_through_the_scorer(artifact) -> None:
    s = scorer(artifact, review_threshold=1.0, decline_threshold=1.0)
    out = s.score_batch(
        [
            pay("a1", 0, "1000.00", "x1"),
            pay("a2", 0, "1000.01", "x2"),
            pay("a3", 0, "10000.01", "x3"),
        ]
    )
    assert [(d.status, d.reasons) for d in out] == [
        (APPROVED, ()),
        (REVIEW, ("AMOUNT_HIGH",)),
        (DECLINED, ("AMOUNT_HIGH", "AMOUNT_EXTREME")),
    ]


def test_thresholds_come_from_the_model_unless_overridden(artifact) -> None:
    assert scorer(artifact).policy.thresholds.review == 0.5
    assert scorer(artifact, decline_threshold=0.95).policy.thresholds.decline == 0.95
    with pytest.raises(ConfigError, match="review_threshold"):
        scorer(artifact, review_threshold=0.99, decline_threshold=0.2)


def test_engine_without_the_velocity_window_is_refused(artifact) -> None:
    engine = FeatureEngine(velocity_windows=(60, 3600))
    with pytest.raises(ConfigError, match="velocity_window_seconds.*600s window"):
        Scorer.from_settings_values(artifact, engine, **{**STOCK, "velocity_window_seconds": 600})


def test_a_fresh_engine_tracks_model_and_rule_windows(artifact) -> None:
    policy = Policy.from_values(THRESHOLDS, velocity_window_seconds=600)
    assert engine_windows(artifact, policy) == (60, 600, 3600)
    assert "customer_nb_tx_600s" in engine_for(artifact, policy).feature_names
    s = scorer(artifact, velocity_window_seconds=600, velocity_max_payments=1)
    out = s.score_batch([pay("w1", 0), pay("w2", 9)])
    assert out[1].reasons[-1] == "VELOCITY_10M"


def test_model_needing_unknown_features_is_refused(artifact) -> None:
    odd = ModelArtifact(
        artifact.estimator, ("amount", "no_such_feature"), {"thresholds": THRESHOLDS}
    )
    with pytest.raises(ConfigError, match="no_such_feature"):
        scorer(odd)


def test_features_are_returned_with_decisions(world, artifact) -> None:
    s = scorer(artifact)
    decisions, X = s.score_batch_with_features(world[0][:50])
    assert X.shape == (50, len(s.engine.feature_names))
    assert len(decisions) == 50
    velocity = s.feature(X, "customer_nb_tx_3600s")
    assert velocity.min() >= 1


def test_empty_batch(artifact) -> None:
    s = scorer(artifact)
    decisions, X = s.score_batch_with_features([])
    assert decisions == [] and X.shape == (0, len(s.engine.feature_names))


def test_label_delay_is_the_one_the_model_was_trained_with(artifact) -> None:
    """Training writes ``feature_engine.label_delay_days``; the serving engine must use it."""
    from payscore.core.features import DAY

    meta = {
        **artifact.metadata,
        "feature_engine": {"velocity_windows": [60, 3600], "label_delay_days": 3},
    }
    three_days = ModelArtifact(artifact.estimator, artifact.feature_names, meta)
    # engine_for is what the consumer builds (and rebuilds) its engines with.
    assert engine_for(three_days, Policy.from_values(THRESHOLDS)).label_delay_days == 3
    s = scorer(three_days)
    fraud = pay("d1", 0, customer="c7")
    s.score_batch([fraud])
    s.engine.add_label("d1", True, fraud.event_time.timestamp() + 3 * DAY)
    # Four days on, at the same terminal: with a 3-day delay the labelled fraud is inside the
    # terminal's window; with 7 days it would not be yet.
    _, X = s.score_batch_with_features([pay("d2", 4 * 24 * 60, customer="c8")])
    assert s.feature(X, "terminal_nb_tx_7day")[0] == 1.0
    assert s.feature(X, "terminal_risk_7day")[0] == 1.0


def test_label_delay_from_older_metadata_and_default(artifact) -> None:
    policy = Policy.from_values(THRESHOLDS)
    older = ModelArtifact(artifact.estimator, artifact.feature_names, {"label_delay_days": 2})
    assert engine_for(older, policy).label_delay_days == 2
    assert engine_for(artifact, policy).label_delay_days == 7  # no delay recorded: the handbook's
