"""What-if: compare the decisions of the current policy and a candidate on the same history.

Both sets of decisions come from ``backtest.run_backtest`` (the production Scorer), so this
module only counts. ``subject`` names the reason codes that mean "the change flagged it": the
candidate rule's code, or the model's codes for a threshold change. See docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from payscore.core.decision import (
    APPROVED,
    MODEL_HIGH_RISK,
    MODEL_VERY_HIGH_RISK,
    REVIEW,
    Decision,
    Policy,
    Thresholds,
)
from payscore.core.rules import Rule
from payscore.core.schema import Payment

MODEL_CODES = frozenset({MODEL_HIGH_RISK, MODEL_VERY_HIGH_RISK})


@dataclass
class DayCounts:
    """One day (or the total) of a what-if report."""

    payments: int = 0
    flagged: int = 0  # decisions under the candidate that carry a subject code
    flagged_fraud: int = 0  # ... of which labelled fraud
    extra_review: int = 0  # REVIEW under the candidate minus REVIEW under the current policy
    overlap: int = 0  # flagged payments the current policy already flags (not APPROVED)

    def add(self, other: DayCounts) -> None:
        for name in ("payments", "flagged", "flagged_fraud", "extra_review", "overlap"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class WhatIf:
    days: dict[date, DayCounts] = field(default_factory=dict)
    total: DayCounts = field(default_factory=DayCounts)


def with_rule(current: Policy, rule: Rule) -> tuple[Policy, Policy, frozenset[str]]:
    """(current without the rule, current with it, subject codes) for trying ``rule``."""
    others = tuple(r for r in current.rules if r.code != rule.code)
    base = Policy(current.thresholds, others, current.version)
    return (
        base,
        Policy(current.thresholds, (*others, rule), current.version),
        frozenset({rule.code}),
    )


def with_review_threshold(current: Policy, review: float) -> tuple[Policy, Policy, frozenset[str]]:
    """(current, current with another review threshold, the model's codes)."""
    thresholds = Thresholds(review, max(review, current.thresholds.decline))
    return current, Policy(thresholds, current.rules, current.version), MODEL_CODES


def compare(
    payments: Sequence[Payment],
    current: Iterable[Decision],
    candidate: Iterable[Decision],
    labels: Mapping[str, bool],
    subject: frozenset[str],
    since: date,
) -> WhatIf:
    """Per event day (UTC) from ``since`` on, and in total: see ``DayCounts``."""
    report = WhatIf()
    for p, now, then in zip(payments, current, candidate, strict=True):
        day = p.event_time.date()
        if day < since:
            continue  # warm-up history: it fed the features, it is not reported
        counts = report.days.setdefault(day, DayCounts())
        counts.payments += 1
        counts.extra_review += (then.status == REVIEW) - (now.status == REVIEW)
        if subject.intersection(then.reasons):
            counts.flagged += 1
            counts.flagged_fraud += labels.get(p.transaction_id) is True
            counts.overlap += now.status != APPROVED
    report.days = dict(sorted(report.days.items()))
    for counts in report.days.values():
        report.total.add(counts)
    return report
