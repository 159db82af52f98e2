"""The shared batch pipeline on SQLite: validation, duplicates, poison messages, offsets."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from payscore.config import Settings
from payscore.core.schema import payment_to_json
from payscore.pipeline import SCORING_ERROR, Pipeline, RawMessage, parse_label
from payscore.store.schema import fraud_labels, metadata, scored_transactions
from payscore.store.writer import DecisionWriter


@pytest.fixture(scope="module")
def artifact_and_payments():
    from sklearn.dummy import DummyClassifier

    from payscore.core import simulator, training
    from payscore.core.model import ModelArtifact

    world = simulator.generate_world(n_customers=40, n_terminals=80, n_days=12)
    history = training.History.from_world(world)
    engine, X = training.compute_features(history)
    y = np.arange(len(X)) % 2  # any two classes: the test is about plumbing, not quality
    estimator = DummyClassifier(strategy="prior").fit(X, y)
    artifact = ModelArtifact(
        estimator, engine.feature_names, {"thresholds": {"review": 0.6, "decline": 0.9}}
    )
    return artifact, simulator.to_payments(world)[:300]


@pytest.fixture
def pipeline(tmp_path, artifact_and_payments):
    from payscore.cli.consume import build_scorer

    artifact, _ = artifact_and_payments
    db = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    metadata.create_all(db)
    yield Pipeline(build_scorer(Settings(), artifact), DecisionWriter(db), "g", labels_topic="l")
    db.dispose()


def messages(payments, start=0, topic="t"):
    return [
        RawMessage(topic, 0, start + i, p.customer_id.encode(), payment_to_json(p))
        for i, p in enumerate(payments)
    ]


def count(pipeline, table=scored_transactions):
    with pipeline.writer.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_batch_accounts_for_every_message(pipeline, artifact_and_payments):
    _, payments = artifact_and_payments
    batch_msgs = messages(payments[:50])
    batch_msgs.append(RawMessage("t", 0, 50, None, b"{broken"))
    batch_msgs.append(RawMessage("t", 0, 51, None, payment_to_json(payments[3])))  # duplicate
    batch, result = pipeline.process(batch_msgs)
    assert (result.decided, result.duplicates, result.dead_letters) == (50, 1, 1)
    assert batch.rejected[0].kind == "json"
    assert pipeline.writer.read_offsets("g", "t") == {0: 52}
    # Re-sending an already stored payment later is a duplicate, not a second decision.
    _, again = pipeline.process(messages(payments[:1], start=52))
    assert (again.decided, again.duplicates) == (0, 1)
    assert count(pipeline) == 50


def _explode_on_amount(monkeypatch, pipeline, amount):
    """Make the model raise for any matrix holding a row with this amount (the poison)."""
    artifact = pipeline.scorer.artifact
    real = artifact.predict_scores
    column = pipeline.scorer.engine.feature_names.index("amount")

    def flaky(names, X):
        if np.any(X[:, column] == amount):
            raise RuntimeError("model exploded")
        return real(names, X)

    monkeypatch.setattr(artifact, "predict_scores", flaky)


def test_poison_message_costs_only_itself(pipeline, artifact_and_payments, monkeypatch):
    _, payments = artifact_and_payments
    poison = float(payments[7].amount)
    assert [float(p.amount) for p in payments[:20]].count(poison) == 1
    _explode_on_amount(monkeypatch, pipeline, poison)
    batch, result = pipeline.process(messages(payments[:20]))
    assert result.decided == 19
    assert [r.kind for r in batch.rejected] == [SCORING_ERROR]
    assert batch.rejected[0].record.source_offset == 7


def test_poison_fallback_adds_each_payment_to_the_state_once(
    pipeline, artifact_and_payments, monkeypatch
):
    """The row-by-row fallback reuses the feature rows: state as if scored once."""
    from payscore.core.scoring import engine_for

    artifact, payments = artifact_and_payments
    _explode_on_amount(monkeypatch, pipeline, float(payments[7].amount))
    pipeline.process(messages(payments[:20]))
    reference = engine_for(artifact, pipeline.scorer.policy)
    reference.transform(payments[:20])
    assert pipeline.scorer.engine.snapshot() == reference.snapshot()


def test_feature_failure_costs_only_its_payment(pipeline, artifact_and_payments, monkeypatch):
    _, payments = artifact_and_payments
    engine = pipeline.scorer.engine
    real = engine.transform_one
    poison = payments[4].transaction_id

    def flaky(payment):
        if payment.transaction_id == poison:
            raise ValueError("bad feature")
        return real(payment)

    monkeypatch.setattr(engine, "transform_one", flaky)
    batch, result = pipeline.process(messages(payments[:10]))
    assert result.decided == 9
    assert [r.record.source_offset for r in batch.rejected] == [4]


def test_same_decisions_as_the_scorer(pipeline, artifact_and_payments):
    """The pipeline's features-then-decide path decides exactly as Scorer.score_batch."""
    from payscore.cli.consume import build_scorer

    artifact, payments = artifact_and_payments
    batch = pipeline.prepare(messages(payments[:120]))
    expected = build_scorer(Settings(), artifact).score_batch(payments[:120])
    assert [d for _, d in batch.decided] == expected


def test_ids_of_an_unwritten_batch_count_as_known(pipeline, artifact_and_payments):
    """Pipelined: batch 2 is prepared before batch 1 is written; a repeat is still a dup."""
    _, payments = artifact_and_payments
    first = pipeline.prepare(messages(payments[:10]))
    second = pipeline.prepare(messages(payments[5:12], start=10))
    assert [d.transaction_id for d in second.duplicates] == [
        p.transaction_id for p in payments[5:10]
    ]
    pipeline.write(first)
    pipeline.write(second)
    assert count(pipeline) == 12
    _, again = pipeline.process(messages(payments[11:12], start=17))
    assert (again.decided, again.duplicates) == (0, 1)


def test_labels_topic_feeds_engine_and_table(pipeline):
    label = b'{"transaction_id":"9","is_fraud":true,"known_at":"2018-04-09T00:00:00+00:00"}'
    batch, _ = pipeline.process([RawMessage("l", 0, 0, None, label)])
    assert len(batch.labels) == 1 and not batch.rejected
    assert count(pipeline, fraud_labels) == 1
    assert isinstance(parse_label(b'{"transaction_id": 5}'), str)
    parsed = parse_label(label)
    assert not isinstance(parsed, str)
    assert parsed.known_at == datetime(2018, 4, 9, tzinfo=timezone.utc)


def test_replayed_batch_changes_nothing(pipeline, artifact_and_payments):
    _, payments = artifact_and_payments
    batch = pipeline.prepare(messages(payments[:30]))
    first = pipeline.write(batch)
    second = pipeline.write(batch)  # e.g. a retry after an ambiguous commit
    assert first.decided == 30 and second.decided == 0 and second.skipped_replayed == 30
    assert count(pipeline) == 30


# -- one schema: the same limits for the consumer, `payscore score` and parse_payment ----------

OVER_LONG = {"channel": "e" * 17, "merchant_category": "54111", "country": "FRA"}


def test_optional_field_limits_are_the_column_sizes():
    from payscore.core.schema import OPTIONAL_TEXT_LIMITS

    columns = {name: scored_transactions.c[name].type.length for name in OPTIONAL_TEXT_LIMITS}
    assert columns == OPTIONAL_TEXT_LIMITS == {"channel": 16, "merchant_category": 4, "country": 2}


@pytest.mark.parametrize("field", sorted(OVER_LONG))
def test_an_over_long_field_is_rejected_alike_everywhere(
    field, pipeline, artifact_and_payments, tmp_path
):
    """parse_payment, the consumer's pipeline and `payscore score` on a file give the same
    kind, field and reason; one character less is accepted by all three."""
    from typer.testing import CliRunner

    from payscore.cli.app import app
    from payscore.core.model import save_artifact
    from payscore.core.schema import InvalidMessage, parse_payment

    artifact, payments = artifact_and_payments
    good, bad = payments[0], payments[1].model_copy(update={field: OVER_LONG[field]})
    fits = payments[2].model_copy(update={field: OVER_LONG[field][:-1]})

    parsed = parse_payment(payment_to_json(bad))
    assert isinstance(parsed, InvalidMessage)
    expected = ("schema", field, parsed.message)
    assert parsed.message.startswith(f"{field}: ") and "at most" in parsed.message
    assert not isinstance(parse_payment(payment_to_json(fits)), InvalidMessage)

    batch = pipeline.prepare(messages([good, bad, fits]))
    assert [(r.kind, r.field, r.reason) for r in batch.rejected] == [expected]

    columns = ["transaction_id", "customer_id", "terminal_id", "amount", "currency"]
    columns += ["event_time", "channel", "merchant_category", "country"]
    data = tmp_path / "payments.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for p in (good, bad, fits):
            body = json.loads(payment_to_json(p))
            writer.writerow(["" if body[c] is None else body[c] for c in columns])
    save_artifact(artifact, tmp_path / "model.joblib")
    rejects = tmp_path / "rejects.csv"
    argv = ["score", "-i", str(data), "-o", str(tmp_path / "out.csv")]
    argv += ["--model", str(tmp_path / "model.joblib"), "--rejects", str(rejects)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    with rejects.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["field"], r["message"]) for r in rows] == [expected]
    with (tmp_path / "out.csv").open(newline="") as f:
        scored = {r["transaction_id"] for r in csv.DictReader(f)}
    assert scored == {good.transaction_id, fits.transaction_id}
