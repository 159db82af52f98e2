"""Every decision's explanation, stored by ``payscore consume`` (and by the consumer for a
payment ``payscore replay-dlq`` sent back), is the one ``payscore score`` gives the same
payment, on the real broker and MariaDB; the column is bounded."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core.explain import MAX_EXPLANATION_CHARS
from payscore.core.features import RATIO_FEATURE, FeatureEngine
from payscore.core.schema import payment_to_json
from payscore.store.schema import scored_transactions
from tests.integration.conftest import keyed, payments_from, produce
from tests.integration.test_replay import _letter, _put_dead_letters, _run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def tree_model(small_world: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A quickly trained tree model (``small_model`` is a logistic regression, which has no
    decision paths to explain): HistGradientBoosting on the serving features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from payscore.core import training
    from payscore.core.model import ModelArtifact, save_artifact

    history = training.History.from_world(small_world)
    engine, X = training.compute_features(history)
    estimator = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    estimator.fit(X, history.labels)
    thresholds = {"review": 0.3, "decline": 0.9}
    meta = {"thresholds": thresholds, "label_delay_days": 7, "model_type": "hist_gb"}
    path = tmp_path_factory.mktemp("trees") / "trees.joblib"
    save_artifact(ModelArtifact(estimator, engine.feature_names, meta), path)
    return str(path)


def _stored(db_url: str, column: str = "explanation") -> dict[str, Any]:
    """Each stored decision's ``column``, by transaction id."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = scored_transactions.c
            return dict(conn.execute(select(c.transaction_id, c[column])).all())
    finally:
        engine.dispose()


def test_stored_explanations_equal_payscore_scores(
    consume_runner,
    kafka_bootstrap,
    new_topic,
    db_url,
    small_world,
    tree_model,
    tmp_path: Path,
) -> None:
    topic, dlq_topic = new_topic(1), new_topic(1)
    consume_runner.env |= {"PAYSCORE_INPUT_TOPIC": topic, "PAYSCORE_DLQ_TOPIC": dlq_topic}
    consume_runner.env["PAYSCORE_MODEL_PATH"] = tree_model
    payments = sorted(payments_from(small_world, 20, 700), key=lambda p: p.event_time)
    last = payments[-1]  # decided last either way: its history is every other payment
    produce(kafka_bootstrap, topic, keyed(payments[:-1]))
    args = ("--batch-size", "113", "--max-wait-ms", "100", "--idle-exit", "4")
    assert consume_runner.run(*args) == 0, consume_runner.logs()
    assert last.transaction_id not in _stored(db_url)

    # The last payment comes back through the dead-letter path: replay-dlq puts it on the
    # topic again and a restarted consumer (its state rebuilt from the database) decides it.
    letter = _letter(topic, len(payments), payment_to_json(last))
    _put_dead_letters(kafka_bootstrap, dlq_topic, [letter])
    assert "1 replayed" in _run(consume_runner.env)
    assert consume_runner.run(*args) == 0, consume_runner.logs()
    stored = _stored(db_url)
    assert len(stored) == len(payments)

    source = tmp_path / "payments.jsonl"
    source.write_bytes(b"\n".join(payment_to_json(p) for p in payments) + b"\n")
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(
        app, ["score", "-i", str(source), "-o", str(out), "--model", tree_model]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        scored = {r["transaction_id"]: r for r in csv.DictReader(f)}
    assert set(scored) == set(stored)
    flagged = 0
    for tx, text in stored.items():
        reasons = json.loads(scored[tx]["explanation"])
        expected = "; ".join(r["text"] for r in reasons)[:MAX_EXPLANATION_CHARS]
        assert text == expected, tx
        assert text is not None and 0 < len(text) <= MAX_EXPLANATION_CHARS
        flagged += scored[tx]["status"] != "APPROVED"
    assert flagged >= 1  # flagged payments are among them, not only approved ones
    assert stored[last.transaction_id]  # the replayed payment is explained too
    assert scored_transactions.c.explanation.type.length == MAX_EXPLANATION_CHARS

    # Each decision also keeps its amount ratio, for other consumers' terminal features: the
    # feature's value to the bit (MariaDB's DOUBLE), the replayed payment's included.
    engine = FeatureEngine()
    X = engine.transform(payments)
    column = X[:, engine.feature_names.index(RATIO_FEATURE)].tolist()
    assert _stored(db_url, "amount_ratio") == dict(
        zip((p.transaction_id for p in payments), column, strict=True)
    )
    assert sum(r != 1.0 for r in column) > len(payments) // 4  # not only the no-history 1.0
