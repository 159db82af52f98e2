"""Business rules as data, evaluated over a whole batch at once.

A rule is a frozen record (code, kind, parameters, action). Its *kind* names an evaluator in
``RULE_KINDS`` that turns the batch's feature matrix into a boolean "fired" column, so new
kinds plug in without touching the scorer. Rules read features by name, never by position.
See docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from payscore.errors import ConfigError

APPROVED, REVIEW, DECLINED = "APPROVED", "REVIEW", "DECLINED"
STATUSES = (APPROVED, REVIEW, DECLINED)
SEVERITY = {APPROVED: 0, REVIEW: 1, DECLINED: 2}


def velocity_feature(window_seconds: int) -> str:
    """The FeatureEngine column counting a customer's payments in the last ``window_seconds``."""
    return f"customer_nb_tx_{int(window_seconds)}s"


@dataclass(frozen=True)
class Rule:
    """When ``kind`` fires with ``params``: add reason ``code``, raise status to ``action``."""

    code: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    action: str = REVIEW

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            known = ", ".join(sorted(RULE_KINDS))
            raise ConfigError("rules", self.code, f"unknown rule kind {self.kind!r} ({known})")
        if self.action not in (REVIEW, DECLINED):
            problem = f"action must be REVIEW or DECLINED, not {self.action!r}"
            raise ConfigError("rules", self.code, problem)
        RULE_KINDS[self.kind].check(self)

    def required_features(self) -> tuple[str, ...]:
        return RULE_KINDS[self.kind].features(self.params)


class Columns:
    """Read-only access to a feature matrix by column name."""

    def __init__(self, feature_names: Sequence[str], X: np.ndarray) -> None:
        self._index = {name: i for i, name in enumerate(feature_names)}
        self._X = X

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> np.ndarray:
        return self._X[:, self._index[name]]


@dataclass(frozen=True)
class RuleKind:
    """How to validate, wire up and evaluate one kind of rule."""

    features: Callable[[Mapping[str, Any]], tuple[str, ...]]
    evaluate: Callable[[Mapping[str, Any], Columns], np.ndarray]
    check: Callable[[Rule], None]


def _positive(rule: Rule, name: str, integer: bool = False) -> None:
    value: Any = rule.params.get(name)
    types: tuple[type, ...] = (int,) if integer else (int, float)
    valid = isinstance(value, types) and not isinstance(value, bool)
    if not valid or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(name, f"rule {rule.code}", f"must be {kind}, got {value!r}")


def _check_velocity(rule: Rule) -> None:
    _positive(rule, "max_payments", integer=True)
    _positive(rule, "window_seconds", integer=True)


def _check_limit(rule: Rule) -> None:
    _positive(rule, "limit")


def _check_feature_above(rule: Rule) -> None:
    if not isinstance(rule.params.get("feature"), str):
        raise ConfigError("feature", f"rule {rule.code}", "must name a feature")
    if not isinstance(rule.params.get("limit"), (int, float)):
        raise ConfigError("limit", f"rule {rule.code}", "must be a number")


RULE_KINDS: dict[str, RuleKind] = {
    # More than max_payments by the customer in (t - window, t], the current one included.
    "velocity": RuleKind(
        features=lambda p: (velocity_feature(p["window_seconds"]),),
        evaluate=lambda p, c: c[velocity_feature(p["window_seconds"])] > p["max_payments"],
        check=_check_velocity,
    ),
    # The payment amount strictly above a limit (same currency units as the message).
    "amount_above": RuleKind(
        features=lambda p: ("amount",),
        evaluate=lambda p, c: c["amount"] > p["limit"],
        check=_check_limit,
    ),
    # Any engine feature strictly above a limit: room for rules without new code.
    "feature_above": RuleKind(
        features=lambda p: (p["feature"],),
        evaluate=lambda p, c: c[p["feature"]] > p["limit"],
        check=_check_feature_above,
    ),
}


def velocity_code(window_seconds: int) -> str:
    """A readable reason code for a velocity window: 3600 -> VELOCITY_1H."""
    for unit_seconds, unit in ((86400, "D"), (3600, "H"), (60, "M")):
        if window_seconds % unit_seconds == 0:
            return f"VELOCITY_{window_seconds // unit_seconds}{unit}"
    return f"VELOCITY_{window_seconds}S"


def default_rules(
    *,
    velocity_max_payments: int,
    velocity_window_seconds: int,
    amount_review_limit: float,
    amount_decline_limit: float,
) -> tuple[Rule, ...]:
    """The stock rule set built from settings: velocity (REVIEW) and two amount limits."""
    if amount_review_limit > amount_decline_limit:
        raise ConfigError(
            "amount_review_limit",
            "settings",
            f"{amount_review_limit} is above amount_decline_limit {amount_decline_limit}",
        )
    return (
        Rule(
            velocity_code(velocity_window_seconds),
            "velocity",
            {"max_payments": velocity_max_payments, "window_seconds": velocity_window_seconds},
            REVIEW,
        ),
        Rule("AMOUNT_HIGH", "amount_above", {"limit": amount_review_limit}, REVIEW),
        Rule("AMOUNT_EXTREME", "amount_above", {"limit": amount_decline_limit}, DECLINED),
    )


def required_features(rules: Sequence[Rule]) -> tuple[str, ...]:
    """Every feature the rules read, in first-use order."""
    names: dict[str, None] = {}
    for rule in rules:
        names.update(dict.fromkeys(rule.required_features()))
    return tuple(names)


def evaluate_rules(
    rules: Sequence[Rule], feature_names: Sequence[str], X: np.ndarray
) -> np.ndarray:
    """Boolean matrix (n payments, n rules): which rule fired for which payment."""
    fired = np.zeros((X.shape[0], len(rules)), dtype=bool)
    if X.shape[0] == 0:
        return fired
    columns = Columns(feature_names, X)
    for j, rule in enumerate(rules):
        missing = [name for name in rule.required_features() if name not in columns]
        if missing:
            raise ConfigError("rules", rule.code, f"feature engine lacks {', '.join(missing)}")
        fired[:, j] = RULE_KINDS[rule.kind].evaluate(rule.params, columns)
    return fired
