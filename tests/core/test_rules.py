"""Rules as data: each fires strictly above its boundary, reads features by name."""

from __future__ import annotations

import numpy as np
import pytest

from payscore.core.rules import (
    DECLINED,
    REVIEW,
    RULE_KINDS,
    Rule,
    default_rules,
    evaluate_rules,
    required_features,
    velocity_code,
    velocity_feature,
)
from payscore.errors import ConfigError

NAMES = ("amount", "customer_nb_tx_60s", "customer_nb_tx_3600s", "terminal_risk_7day")


def matrix(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, len(NAMES))


def stock() -> tuple[Rule, ...]:
    return default_rules(
        velocity_max_payments=5,
        velocity_window_seconds=3600,
        amount_review_limit=1000.0,
        amount_decline_limit=10_000.0,
    )


def fired_codes(rules: tuple[Rule, ...], X: np.ndarray, names: tuple[str, ...] = NAMES) -> list:
    fired = evaluate_rules(rules, names, X)
    return [[r.code for r, hit in zip(rules, row, strict=True) if hit] for row in fired]


def test_stock_rules_are_data() -> None:
    rules = stock()
    assert [(r.code, r.kind, r.action) for r in rules] == [
        ("VELOCITY_1H", "velocity", REVIEW),
        ("AMOUNT_HIGH", "amount_above", REVIEW),
        ("AMOUNT_EXTREME", "amount_above", DECLINED),
    ]
    assert rules[0].params == {"max_payments": 5, "window_seconds": 3600}
    assert required_features(rules) == ("customer_nb_tx_3600s", "amount")


def test_velocity_fires_above_max_not_at_it() -> None:
    X = matrix((10, 0, 5, 0), (10, 0, 6, 0), (10, 99, 4, 0))
    assert fired_codes(stock(), X) == [[], ["VELOCITY_1H"], []]


def test_velocity_reads_its_own_window_by_name() -> None:
    rules = default_rules(
        velocity_max_payments=2,
        velocity_window_seconds=60,
        amount_review_limit=1000.0,
        amount_decline_limit=10_000.0,
    )
    # Columns reordered: the rule must find its column by name, not position.
    names = ("customer_nb_tx_3600s", "terminal_risk_7day", "customer_nb_tx_60s", "amount")
    X = np.array([[50, 0, 2, 1.0], [0, 0, 3, 1.0]])
    assert fired_codes(rules, X, names) == [[], ["VELOCITY_1M"]]


def test_amount_boundaries() -> None:
    X = matrix(
        (1000.00, 0, 1, 0),
        (1000.01, 0, 1, 0),
        (10_000.00, 0, 1, 0),
        (10_000.01, 0, 1, 0),
        (999.99, 0, 1, 0),
    )
    assert fired_codes(stock(), X) == [
        [],
        ["AMOUNT_HIGH"],
        ["AMOUNT_HIGH"],
        ["AMOUNT_HIGH", "AMOUNT_EXTREME"],
        [],
    ]


def test_generic_feature_rule_plugs_in_without_code() -> None:
    rule = Rule("TERMINAL_RISKY", "feature_above", {"feature": "terminal_risk_7day", "limit": 0.5})
    X = matrix((1, 1, 1, 0.5), (1, 1, 1, 0.51))
    assert fired_codes((rule,), X) == [[], ["TERMINAL_RISKY"]]


def test_missing_feature_is_a_config_error() -> None:
    rules = default_rules(
        velocity_max_payments=1,
        velocity_window_seconds=600,
        amount_review_limit=1.0,
        amount_decline_limit=2.0,
    )
    with pytest.raises(ConfigError, match="customer_nb_tx_600s"):
        evaluate_rules(rules, NAMES, matrix((1, 1, 1, 1)))


def test_empty_batch() -> None:
    assert evaluate_rules(stock(), NAMES, np.empty((0, 4))).shape == (0, 3)


@pytest.mark.parametrize(
    "kind, params, action, match",
    [
        ("nope", {}, REVIEW, "unknown rule kind"),
        ("velocity", {"max_payments": 0, "window_seconds": 60}, REVIEW, "max_payments"),
        ("velocity", {"max_payments": 3, "window_seconds": 1.5}, REVIEW, "window_seconds"),
        ("velocity", {"max_payments": True, "window_seconds": 60}, REVIEW, "max_payments"),
        ("amount_above", {"limit": -1}, REVIEW, "limit"),
        ("amount_above", {}, REVIEW, "limit"),
        ("amount_above", {"limit": 10}, "ESCALATE", "action"),
        ("feature_above", {"limit": 1}, REVIEW, "feature"),
    ],
)
def test_bad_rules_are_rejected(kind: str, params: dict, action: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Rule("X", kind, params, action)


def test_amount_limits_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="amount_review_limit"):
        default_rules(
            velocity_max_payments=5,
            velocity_window_seconds=3600,
            amount_review_limit=500.0,
            amount_decline_limit=100.0,
        )


@pytest.mark.parametrize(
    "seconds, code",
    [
        (60, "VELOCITY_1M"),
        (3600, "VELOCITY_1H"),
        (86400, "VELOCITY_1D"),
        (7200, "VELOCITY_2H"),
        (90, "VELOCITY_90S"),
        (600, "VELOCITY_10M"),
    ],
)
def test_velocity_codes(seconds: int, code: str) -> None:
    assert velocity_code(seconds) == code
    assert velocity_feature(seconds) == f"customer_nb_tx_{seconds}s"


def test_registry_names_every_kind() -> None:
    assert {"velocity", "amount_above", "feature_above"} <= set(RULE_KINDS)
