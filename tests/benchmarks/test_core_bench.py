"""Core speed: message parsing, and features + model + rules + decision per batch and per payment.

Run with ``python -m pytest tests/benchmarks --benchmark-enable``; the normal suite runs
with benchmarks disabled, so each body runs once as a plain test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from payscore.core.features import FeatureEngine
from payscore.core.model import ModelArtifact
from payscore.core.schema import Payment, parse_payment, payment_to_json
from payscore.core.scoring import Scorer
from payscore.core.simulator import generate_world, to_payments

BATCH = 500
SETTINGS = {
    "review_threshold": None,
    "decline_threshold": None,
    "velocity_max_payments": 5,
    "velocity_window_seconds": 3600,
    "amount_review_limit": 1000.0,
    "amount_decline_limit": 10_000.0,
}
MODELS = {
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0),
    "rf100": lambda: RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
}


@pytest.fixture(scope="module")
def stream() -> list[Payment]:
    """About 46k simulated payments in event order (400 customers, 60 days)."""
    df = generate_world(n_customers=400, n_terminals=800, n_days=60)
    df = df[df["TX_AMOUNT"] > 0]  # the generator can round an amount to 0.00: not a payment
    payments = to_payments(df)
    payments.sort(key=lambda p: p.event_time)
    return payments


def artifact_for(kind: str, payments: list[Payment]) -> ModelArtifact:
    engine = FeatureEngine()
    X = engine.transform(payments[:8000])
    y = (X[:, 0] > 120).astype(np.int64)  # any learnable target: speed, not quality
    estimator = MODELS[kind]()
    estimator.fit(X, y)
    return ModelArtifact(
        estimator, engine.feature_names, {"thresholds": {"review": 0.5, "decline": 0.9}}
    )


def warm_scorer(artifact: ModelArtifact, payments: list[Payment]) -> tuple[Scorer, Iterator[int]]:
    scorer = Scorer.from_settings_values(artifact, None, **SETTINGS)  # type: ignore[arg-type]
    for start in range(0, 10_000, BATCH):  # ten days of state before measuring
        scorer.score_batch(payments[start : start + BATCH])
    return scorer, itertools.count(10_000, BATCH)


def test_parse_throughput(benchmark, stream) -> None:
    messages = [payment_to_json(p) for p in stream[:1000]]

    def parse_all() -> int:
        return sum(isinstance(parse_payment(m), Payment) for m in messages)

    assert benchmark(parse_all) == 1000
    benchmark.extra_info["messages_per_call"] = 1000


def test_parse_rejects_throughput(benchmark) -> None:
    bad = [b'{"transaction_id": "x", "amount": "NaN"}', b"\xff" * 40, b"[1]"] * 333

    def parse_all() -> int:
        return sum(not isinstance(parse_payment(m), Payment) for m in bad)

    assert benchmark(parse_all) == 999


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_core_batch_500(benchmark, stream, kind: str) -> None:
    scorer, starts = warm_scorer(artifact_for(kind, stream), stream)

    def one_batch() -> int:
        start = next(starts)
        assert start + BATCH <= len(stream), "the benchmark stream is too short"
        return len(scorer.score_batch(stream[start : start + BATCH]))

    result = benchmark.pedantic(one_batch, rounds=30, iterations=1, warmup_rounds=1)
    assert result == BATCH
    benchmark.extra_info["payments_per_call"] = BATCH


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_core_single_payment(benchmark, stream, kind: str) -> None:
    scorer, _ = warm_scorer(artifact_for(kind, stream), stream)
    singles = iter(stream[10_000:])

    def one() -> str:
        return scorer.score_batch([next(singles)])[0].status

    assert benchmark.pedantic(one, rounds=200, iterations=1, warmup_rounds=5) in {
        "APPROVED",
        "REVIEW",
        "DECLINED",
    }


def test_features_only_batch_500(benchmark, stream) -> None:
    engine = FeatureEngine()
    engine.transform(stream[:10_000])
    starts = itertools.count(10_000, BATCH)

    def one_batch() -> int:
        start = next(starts)
        return engine.transform(stream[start : start + BATCH]).shape[0]

    assert benchmark.pedantic(one_batch, rounds=30, iterations=1) == BATCH


def test_parse_numeric_amount_throughput(benchmark, stream) -> None:
    """Valid messages off the fast path (amount as a JSON number): the full validator's cost."""
    messages = []
    for p in stream[:1000]:
        body = payment_to_json(p).replace(b'"amount":"', b'"amount":', 1)
        messages.append(body.replace(b'","currency"', b',"currency"', 1))

    def parse_all() -> int:
        return sum(isinstance(parse_payment(m), Payment) for m in messages)

    assert benchmark(parse_all) == 1000
    benchmark.extra_info["messages_per_call"] = 1000
