"""Explanations: decision-path contributions that add up to the model's own raw score, and
reason codes an analyst can read."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from payscore.core import simulator, training
from payscore.core.explain import (
    MAX_EXPLANATION_CHARS,
    NotExplainable,
    Reason,
    contributions,
    explain,
    explanation_text,
    reason_text,
    scored_contributions,
)
from payscore.core.model import ModelArtifact


@pytest.fixture(scope="module")
def fitted() -> tuple[ModelArtifact, tuple[str, ...], np.ndarray]:
    df = simulator.generate_world(n_customers=120, n_terminals=240, n_days=50)
    engine, X = training.compute_features(training.History.from_world(df))
    y = df["TX_FRAUD"].to_numpy()
    est = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    names = engine.feature_names
    return ModelArtifact(est, names, {"thresholds": {}}), names, X


def test_contributions_add_up_to_the_raw_score(fitted) -> None:
    artifact, names, X = fitted
    rows = X[::7].copy()
    rows[::5, 0] = np.nan  # missing values take the learned side
    artifact.warm_up()
    bias, C = contributions(artifact, names, rows)
    raw = logit(artifact.estimator.predict_proba(rows)[:, 1])
    assert C.shape == (len(rows), len(artifact.feature_names))
    assert np.allclose(bias + C.sum(axis=1), raw, rtol=0, atol=1e-9)
    assert np.abs(C).sum() > 0


def test_explain_lists_the_features_that_raised_the_score_most(fitted) -> None:
    artifact, names, X = fitted
    scores = artifact.predict_scores(names, X)
    top = X[np.argsort(-scores)[:20]]
    _, C = contributions(artifact, names, top)
    reasons = explain(artifact, names, top, top=3)
    for row_c, row_reasons in zip(C, reasons, strict=True):
        assert row_reasons, "a high score has something that raised it"
        pushes = [r.contribution for r in row_reasons]
        assert pushes == sorted(pushes, reverse=True) and min(pushes) > 0
        assert pushes[0] == pytest.approx(row_c.max())
        assert all(r.text for r in row_reasons)


def test_reason_codes_read_as_sentences() -> None:
    row = {"customer_avg_amount_30day": 20.0, "customer_nb_tx_30day": 12.0}
    assert reason_text("amount", 84.0, row) == "amount 84.00 (4.2x the card's 30-day mean)"
    assert (
        reason_text("customer_amount_ratio_median_30day", 6.2, row)
        == "amount 6.2x the card's 30-day median"
    )
    assert reason_text("terminal_nb_fraud_30day", 3.0, row).startswith("terminal had 3 known")
    assert reason_text("customer_nb_tx_1day", 9.0, row) == "9 payments by this card in 24 h"
    assert reason_text("customer_nb_tx_3600s", 4.0, row) == "4 payments by this card in 3600 s"
    assert reason_text("something_new", 1.5, row) == "something_new = 1.5"
    assert reason_text("amount", float("nan"), row) == "amount unknown"


def test_a_model_that_is_not_a_tree_walk_is_one_clear_error(fitted) -> None:
    _, names, X = fitted
    est = LogisticRegression(max_iter=200).fit(X[:500, :2], np.arange(500) % 2)
    artifact = ModelArtifact(est, names[:2], {})
    with pytest.raises(NotExplainable, match="not a walkable tree model"):
        contributions(artifact, names, X[:3])


def test_one_walk_scores_exactly_as_predict_scores_and_explains_as_contributions(fitted) -> None:
    artifact, names, X = fitted
    rows = X[::3].copy()
    rows[::4, 1] = np.nan
    scores, C = scored_contributions(artifact, names, rows)
    assert np.array_equal(scores, artifact.predict_scores(names, rows))  # the same bits
    _, alone = contributions(artifact, names, rows)
    assert np.allclose(C, alone, rtol=0, atol=1e-12)
    assert explain(artifact, names, rows, 3, C) == explain(artifact, names, rows, 3)


def test_the_stored_text_joins_the_reasons_and_is_bounded(fitted) -> None:
    artifact, names, X = fitted
    reasons = explain(artifact, names, X[:50], top=10)
    for row in reasons:
        text = explanation_text(row)
        assert text == "; ".join(r.text for r in row)[:MAX_EXPLANATION_CHARS]
    long = [Reason("amount", 1.0, 1.0, "x" * 300)] * 3
    text = explanation_text(long)
    assert len(text) == MAX_EXPLANATION_CHARS and text.endswith("...")


def test_a_scorer_decides_the_same_with_and_without_reasons(fitted) -> None:
    from payscore.core.decision import Policy
    from payscore.core.features import FeatureEngine
    from payscore.core.scoring import Scorer

    artifact, names, X = fitted
    # the stock rules, with an amount limit low enough to flag some rows by rule alone
    limits = {"velocity_max_payments": 3, "velocity_window_seconds": 3600}
    limits |= {"amount_review_limit": 50.0, "amount_decline_limit": 1e9}
    policy = Policy.from_values({"review": 0.2, "decline": 0.8}, **limits)
    scorer = Scorer(artifact, FeatureEngine(), policy)
    rows = X[:400]
    ids = [f"t{i}" for i in range(len(rows))]
    plain = scorer.decide_and_explain(ids, rows, [None] * len(rows))
    explained = scorer.decide_and_explain(ids, rows, [None] * len(rows), 3)
    assert plain.reasons is None and explained.reasons is not None
    assert plain.decisions == explained.decisions
    assert {d.status for d in plain.decisions} >= {"APPROVED", "REVIEW"}
    assert explained.reasons == explain(artifact, names, rows, 3)
