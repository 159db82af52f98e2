"""Explanations: decision-path contributions that add up to the model's own raw score, and
reason codes an analyst can read."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from payscore.core import simulator, training
from payscore.core.explain import NotExplainable, contributions, explain, reason_text
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
