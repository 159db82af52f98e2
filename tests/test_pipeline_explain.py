"""The pipeline stores every decision's explanation (``explain_top_reasons``; none at 0 or for
a model that cannot be explained), and a challenger that reuses the champion's rule results
decides as it would alone."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from payscore.config import Settings
from payscore.core.decision import decide
from payscore.core.explain import explain, explanation_text
from payscore.core.scoring import Scorer
from payscore.pipeline import Pipeline, build_scorer
from payscore.store.schema import metadata, scored_transactions
from payscore.store.writer import DecisionWriter
from tests.test_pipeline import artifact_and_payments, messages  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def trees(artifact_and_payments):  # noqa: F811 - the imported fixture
    from sklearn.ensemble import HistGradientBoostingClassifier

    from payscore.core import simulator, training
    from payscore.core.model import ModelArtifact

    world = simulator.generate_world(n_customers=40, n_terminals=80, n_days=12)
    engine, X = training.compute_features(training.History.from_world(world))
    y = world["TX_FRAUD"].to_numpy()
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    meta = {"thresholds": {"review": 0.6, "decline": 0.9}}  # the challenger decides with these
    return ModelArtifact(estimator, engine.feature_names, meta)


def _run(tmp_path, artifact, payments, top: int, challenger=None, **settings):
    db = create_engine(f"sqlite:///{tmp_path / f'p{top}.db'}")
    metadata.create_all(db)
    scorer = build_scorer(Settings(explain_top_reasons=top, **settings), artifact)
    if challenger is not None:
        scorer.challenger = Scorer(challenger, scorer.engine, scorer.policy)
    pipeline = Pipeline(scorer, DecisionWriter(db), "g")
    for lo in range(0, len(payments), 97):
        pipeline.process(messages(payments[lo : lo + 97], start=lo))
    with db.connect() as conn:
        c = scored_transactions.c
        rows = conn.execute(
            select(c.transaction_id, c.explanation, c.challenger_score, c.challenger_status)
        ).all()
    db.dispose()
    return {r.transaction_id: r for r in rows}


def test_every_decision_is_stored_with_the_scorers_explanation(
    tmp_path,
    trees,
    artifact_and_payments,  # noqa: F811
) -> None:
    _, payments = artifact_and_payments
    stored = _run(tmp_path, trees, payments, 3)
    assert len(stored) == len(payments)
    # The same texts a fresh scorer gives the same payments, batch by batch.
    scorer = build_scorer(Settings(), trees)
    names = scorer.engine.feature_names
    for lo in range(0, len(payments), 97):
        batch = payments[lo : lo + 97]
        _, X = scorer.score_batch_with_features(batch)
        for p, reasons in zip(batch, explain(trees, names, X, 3), strict=True):
            assert stored[p.transaction_id].explanation == explanation_text(reasons)
    assert all(r.explanation for r in stored.values())
    assert all(r.explanation is None for r in _run(tmp_path, trees, payments, 0).values())


def test_a_model_without_paths_stores_no_explanation(
    tmp_path,
    artifact_and_payments,  # noqa: F811
) -> None:
    artifact, payments = artifact_and_payments  # a DummyClassifier: nothing to walk
    stored = _run(tmp_path, artifact, payments[:100], 3)
    assert len(stored) == 100 and all(r.explanation is None for r in stored.values())


def test_the_challenger_reusing_the_rule_results_decides_as_alone(
    tmp_path,
    trees,
    artifact_and_payments,  # noqa: F811
) -> None:
    dummy, payments = artifact_and_payments
    # Two payments an hour per card at most: the velocity rule fires often, so the reused
    # rule results decide part of the challenger's statuses (its score 0.5 is below review).
    stored = _run(tmp_path, trees, payments, 3, challenger=dummy, velocity_max_payments=2)
    scorer = build_scorer(Settings(velocity_max_payments=2), trees)
    names = scorer.engine.feature_names
    for lo in range(0, len(payments), 97):
        batch = payments[lo : lo + 97]
        _, X = scorer.score_batch_with_features(batch)
        scores = dummy.predict_scores(names, X)
        ids = [p.transaction_id for p in batch]
        alone = decide(scorer.policy, ids, scores, names, X, dummy.version, batch)
        for d in alone:
            row = stored[d.transaction_id]
            assert (row.challenger_score, row.challenger_status) == (d.score, d.status)
    statuses = {r.challenger_status for r in stored.values()}
    assert {"APPROVED", "REVIEW"} <= statuses, statuses
