"""Decisions: thresholds at the boundary, severity ordering, overrides, bad configurations."""

from __future__ import annotations

import numpy as np
import pytest

from payscore.core.decision import (
    APPROVED,
    DECLINED,
    MODEL_HIGH_RISK,
    MODEL_VERY_HIGH_RISK,
    REVIEW,
    Decision,
    Policy,
    Thresholds,
    decide,
)
from payscore.errors import ConfigError

NAMES = ("amount", "customer_nb_tx_3600s")
MODEL = {"review": 0.5, "decline": 0.9}


def policy(**overrides: float) -> Policy:
    return Policy.from_values(MODEL, **overrides)  # type: ignore[arg-type]


def run(pol: Policy, scores: list[float], rows: list[tuple[float, float]]) -> list[Decision]:
    ids = [f"t{i}" for i in range(len(scores))]
    return decide(pol, ids, np.array(scores), NAMES, np.array(rows, dtype=float), "v1")


def test_model_thresholds_at_the_boundary() -> None:
    quiet = (10.0, 1.0)
    out = run(policy(), [0.0, 0.4999, 0.5, 0.8999, 0.9, 1.0], [quiet] * 6)
    assert [d.status for d in out] == [APPROVED, APPROVED, REVIEW, REVIEW, DECLINED, DECLINED]
    assert [d.reasons for d in out] == [
        (),
        (),
        (MODEL_HIGH_RISK,),
        (MODEL_HIGH_RISK,),
        (MODEL_VERY_HIGH_RISK,),
        (MODEL_VERY_HIGH_RISK,),
    ]
    assert out[2] == Decision("t2", 0.5, REVIEW, (MODEL_HIGH_RISK,), "v1")


def test_most_severe_of_model_and_rules_wins() -> None:
    out = run(
        policy(),
        [0.1, 0.1, 0.6, 0.95, 0.1, 0.6],
        [(2000.0, 1), (20_000.0, 1), (20_000.0, 1), (5.0, 9), (5.0, 9), (5.0, 9)],
    )
    assert [(d.status, d.reasons) for d in out] == [
        (REVIEW, ("AMOUNT_HIGH",)),
        (DECLINED, ("AMOUNT_HIGH", "AMOUNT_EXTREME")),
        (DECLINED, (MODEL_HIGH_RISK, "AMOUNT_HIGH", "AMOUNT_EXTREME")),
        (DECLINED, (MODEL_VERY_HIGH_RISK, "VELOCITY_1H")),  # a REVIEW rule never lowers
        (REVIEW, ("VELOCITY_1H",)),
        (REVIEW, (MODEL_HIGH_RISK, "VELOCITY_1H")),
    ]


def test_settings_override_model_thresholds() -> None:
    pol = policy(review_threshold=0.2, decline_threshold=0.3)
    assert pol.thresholds == Thresholds(0.2, 0.3)
    out = run(pol, [0.19, 0.2, 0.3], [(1.0, 1.0)] * 3)
    assert [d.status for d in out] == [APPROVED, REVIEW, DECLINED]
    # one override only: the other comes from the model
    assert policy(review_threshold=0.7).thresholds == Thresholds(0.7, 0.9)


def test_equal_thresholds_skip_review() -> None:
    out = run(policy(review_threshold=0.5, decline_threshold=0.5), [0.49, 0.5], [(1, 1)] * 2)
    assert [d.status for d in out] == [APPROVED, DECLINED]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"review_threshold": 0.95}, "above decline threshold"),
        ({"review_threshold": 0.6, "decline_threshold": 0.4}, "above decline threshold"),
        ({"decline_threshold": 1.5}, "between 0 and 1"),
        ({"review_threshold": -0.1}, "between 0 and 1"),
    ],
)
def test_bad_thresholds_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        policy(**kwargs)


def test_model_without_thresholds_needs_settings() -> None:
    with pytest.raises(ConfigError, match="decline_threshold"):
        Policy.from_values({"review": 0.5})
    pol = Policy.from_values(None, review_threshold=0.4, decline_threshold=0.8)
    assert pol.thresholds == Thresholds(0.4, 0.8)


def test_velocity_windows_of_policy() -> None:
    assert policy(velocity_window_seconds=60).velocity_windows() == (60,)
    assert policy().required_features() == ("customer_nb_tx_3600s", "amount")


def test_decisions_are_deterministic_and_typed() -> None:
    rng = np.random.default_rng(7)
    scores = rng.random(200)
    amounts, counts = rng.random(200) * 20_000, rng.integers(0, 9, 200)
    rows = [(float(a), float(c)) for a, c in zip(amounts, counts, strict=True)]
    first, second = run(policy(), list(scores), rows), run(policy(), list(scores), rows)
    assert first == second
    assert all(isinstance(d.score, float) and isinstance(d.status, str) for d in first)
    assert {d.status for d in first} == {APPROVED, REVIEW, DECLINED}


def test_empty_batch() -> None:
    assert decide(policy(), [], np.empty(0), NAMES, np.empty((0, 2)), "v1") == []
