"""From model scores and fired rules to APPROVED / REVIEW / DECLINED with reason codes.

A ``Policy`` is the whole business configuration as data: two score thresholds and the rules.
Precedence (docs/rules.md): a block list (an ``in_list`` rule that declines) wins over
everything; then an allow rule (action APPROVED) wins over the other rules and the model;
otherwise the status is the most severe of the model's verdict and every fired rule's action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payscore.core.rules import (
    APPROVED,
    DECLINED,
    REVIEW,
    SEVERITY,
    STATUSES,
    Rule,
    default_rules,
    evaluate_rules,
    required_features,
)
from payscore.errors import ConfigError

__all__ = [
    "APPROVED",
    "DECLINED",
    "MODEL_HIGH_RISK",
    "MODEL_VERY_HIGH_RISK",
    "REVIEW",
    "STATUSES",
    "Decision",
    "Policy",
    "Thresholds",
    "decide",
]

MODEL_HIGH_RISK = "MODEL_HIGH_RISK"
MODEL_VERY_HIGH_RISK = "MODEL_VERY_HIGH_RISK"
_BY_SEVERITY = (APPROVED, REVIEW, DECLINED)


@dataclass(frozen=True)
class Decision:
    """The outcome for one payment, as stored and published."""

    transaction_id: str
    score: float
    status: str
    reasons: tuple[str, ...]
    model_version: str
    #: The stored policy version the decision was made under (None: settings only).
    policy_version: int | None = None


@dataclass(frozen=True)
class Thresholds:
    """Scores at or above ``review`` go to REVIEW; at or above ``decline`` are DECLINED."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        for name, value in (("review_threshold", self.review), ("decline_threshold", self.decline)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(name, "thresholds", f"must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ConfigError(name, "thresholds", f"must be between 0 and 1, got {value}")
        if self.review > self.decline:
            raise ConfigError(
                "review_threshold",
                "thresholds",
                f"review threshold {self.review} is above decline threshold {self.decline}",
            )

    @classmethod
    def resolve(
        cls,
        model_thresholds: Mapping[str, Any] | None,
        review: float | None = None,
        decline: float | None = None,
    ) -> Thresholds:
        """Settings overrides win; otherwise the thresholds the model was calibrated with."""
        model_thresholds = model_thresholds or {}
        review = review if review is not None else model_thresholds.get("review")
        decline = decline if decline is not None else model_thresholds.get("decline")
        if review is None or decline is None:
            missing = "review_threshold" if review is None else "decline_threshold"
            raise ConfigError(
                missing, "model metadata", "the model has no such threshold; set it in settings"
            )
        return cls(float(review), float(decline))


@dataclass(frozen=True)
class Policy:
    """Thresholds plus rules: everything that turns a score into a decision."""

    thresholds: Thresholds
    rules: tuple[Rule, ...] = ()
    #: The stored policy version these rules come from; None for the settings-only policy.
    version: int | None = None

    @classmethod
    def from_values(
        cls,
        model_thresholds: Mapping[str, Any] | None,
        *,
        review_threshold: float | None = None,
        decline_threshold: float | None = None,
        velocity_max_payments: int = 5,
        velocity_window_seconds: int = 3600,
        amount_review_limit: float = 1000.0,
        amount_decline_limit: float = 10_000.0,
    ) -> Policy:
        """Build the stock policy from settings values and the model's own thresholds."""
        thresholds = Thresholds.resolve(model_thresholds, review_threshold, decline_threshold)
        rules = default_rules(
            velocity_max_payments=velocity_max_payments,
            velocity_window_seconds=velocity_window_seconds,
            amount_review_limit=amount_review_limit,
            amount_decline_limit=amount_decline_limit,
        )
        return cls(thresholds, rules)

    def required_features(self) -> tuple[str, ...]:
        return required_features(self.rules)

    def required_fields(self) -> tuple[str, ...]:
        """Payment fields the rules read (so callers must pass the payments to ``decide``)."""
        return tuple(dict.fromkeys(f for rule in self.rules for f in rule.required_fields()))

    def velocity_windows(self) -> tuple[int, ...]:
        """Windows (seconds) the FeatureEngine must track for this policy's velocity rules."""
        return tuple(
            sorted({int(r.params["window_seconds"]) for r in self.rules if r.kind == "velocity"})
        )


def decide(
    policy: Policy,
    transaction_ids: Sequence[str],
    scores: np.ndarray,
    feature_names: Sequence[str],
    X: np.ndarray,
    model_version: str,
    payments: Sequence[Any] | None = None,
    fired: np.ndarray | None = None,
) -> list[Decision]:
    """Decisions for a batch: block list, then allow rules, then the most severe of the model
    and the other rules. ``payments`` (one per row) are needed by list and currency rules;
    ``fired``: ``evaluate_rules``'s result for these rows and rules, when already computed."""
    scores = np.asarray(scores, dtype=np.float64)
    very_high = scores >= policy.thresholds.decline
    high = scores >= policy.thresholds.review
    severity = np.where(very_high, SEVERITY[DECLINED], np.where(high, SEVERITY[REVIEW], 0))

    if fired is None:
        fired = evaluate_rules(policy.rules, feature_names, X, payments)
    n = len(transaction_ids)
    tier = {"block": np.zeros(n, bool), "allow": np.zeros(n, bool)}
    for j, rule in enumerate(policy.rules):
        if rule.is_block_list:
            tier["block"] |= fired[:, j]
        elif rule.action == APPROVED:
            tier["allow"] |= fired[:, j]
        else:
            severity = np.where(fired[:, j], np.maximum(severity, SEVERITY[rule.action]), severity)
    blocked, allowed = tier["block"], tier["allow"] & ~tier["block"]
    if blocked.any() or allowed.any():  # rare: most batches skip this
        fired = fired.copy()  # the caller's copy may decide again (the challenger's)
        severity = np.where(blocked, SEVERITY[DECLINED], np.where(allowed, 0, severity))
        # The reasons name what decided: only the block-list codes for a blocked payment,
        # only the allow codes for an allowed one, else the model's and the rules' as before.
        for j, rule in enumerate(policy.rules):
            fired[:, j] &= np.where(
                blocked, rule.is_block_list, np.where(allowed, rule.action == APPROVED, True)
            )
        model_counts = ~(blocked | allowed)
        very_high &= model_counts
        high &= model_counts

    codes = [rule.code for rule in policy.rules]
    # Python lists: indexing them per row is much cheaper than indexing numpy arrays.
    fired_rows: list[list[bool]] = fired.tolist()
    very_high_l, high_l = very_high.tolist(), high.tolist()
    scores_l, severity_l = scores.tolist(), severity.tolist()
    decisions = []
    for i, tx_id in enumerate(transaction_ids):
        reasons: list[str] = []
        if very_high_l[i]:
            reasons.append(MODEL_VERY_HIGH_RISK)
        elif high_l[i]:
            reasons.append(MODEL_HIGH_RISK)
        if any(fired_rows[i]):
            reasons.extend(code for code, hit in zip(codes, fired_rows[i], strict=True) if hit)
        decisions.append(
            Decision(
                transaction_id=tx_id,
                score=scores_l[i],
                status=_BY_SEVERITY[severity_l[i]],
                reasons=tuple(reasons),
                model_version=model_version,
                policy_version=policy.version,
            )
        )
    return decisions
