"""Decision thresholds from score quantiles or from a review budget, and the trade-off curve
between the daily review load and the share of frauds caught. Pure: arrays in, numbers out.

The review load of a day is the number of distinct cards with at least one payment in the
REVIEW band (``review <= score < decline``) that day: a declined payment is refused without a
person, a card with two payments to review is looked at once. A fraud is caught when its
payment scores at least ``review`` (reviewed or declined). See docs/model.md, "Thresholds from
a review budget".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from payscore.errors import InputError

DECLINE_QUANTILE = 0.997  # DECLINED ~ top 0.3 % of validation scores
REVIEW_QUANTILE = 0.98  # REVIEW ~ the next 1.7 %
MAX_BUDGET = 1_000_000  # cards a day: far above any team, small enough to stay a number
CURVE_POINTS = 200  # at most this many points on a drawn curve


def quantile_thresholds(scores: np.ndarray) -> dict[str, float]:
    """The default thresholds: review and decline at score quantiles of the validation period."""
    decline = float(np.quantile(scores, DECLINE_QUANTILE))
    review = float(np.quantile(scores, REVIEW_QUANTILE))
    return {"review": min(review, decline), "decline": decline}


def check_budget(budget: Any) -> float:
    """A review budget in cards a day: a number above 0 and at most ``MAX_BUDGET``."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise InputError(f"--review-budget must be a number of cards a day, got {budget!r}")
    if not math.isfinite(budget) or not 0 < budget <= MAX_BUDGET:
        raise InputError(
            f"--review-budget must be above 0 and at most {MAX_BUDGET:,} cards a day, "
            f"got {budget:g}"
        )
    return float(budget)


@dataclass(frozen=True)
class BudgetChoice:
    """The review threshold a budget chose, with what it does on the period it was set on."""

    budget: float  # cards a day asked for
    review: float
    decline: float
    expected_load: float  # cards a day reviewed at ``review`` on the period
    fraud_share: float | None  # share of the period's frauds caught (None: no fraud)
    frauds: int
    days: int

    def as_metadata(self) -> dict[str, Any]:
        return {
            "cards_per_day": self.budget,
            "review_threshold": self.review,
            "expected_cards_per_day": round(self.expected_load, 3),
            "fraud_share_caught": None if self.fraud_share is None else round(self.fraud_share, 6),
            "frauds": self.frauds,
            "days": self.days,
        }


class _Scored:
    """One period's payments reduced to what the curve needs: each card-day's highest score
    below ``decline`` (descending), the fraud scores (ascending) and the number of days."""

    def __init__(
        self,
        days: np.ndarray,
        customers: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray,
        decline: float,
    ) -> None:
        days = np.asarray(days)
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels)
        if len(days) == 0:
            raise InputError("no payments to set a review threshold on")
        band = scores < decline
        frame = pd.DataFrame(
            {"day": days[band], "card": np.asarray(customers)[band], "score": scores[band]}
        )
        best = frame.groupby(["day", "card"], sort=False)["score"].max().to_numpy()
        self.card_days = np.sort(best)[::-1]
        self.fraud_scores = np.sort(scores[labels == 1])
        self.days = int(len(np.unique(days)))
        self.decline = float(decline)

    def load(self, review: np.ndarray | float) -> np.ndarray:
        """Cards a day with a payment in [review, decline)."""
        ascending = self.card_days[::-1]
        at_least = len(ascending) - np.searchsorted(ascending, review, side="left")
        return np.asarray(at_least / self.days, dtype=np.float64)

    def caught(self, review: np.ndarray | float) -> np.ndarray | None:
        """Share of frauds scoring at least ``review``; None without frauds."""
        n = len(self.fraud_scores)
        if n == 0:
            return None
        return np.asarray((n - np.searchsorted(self.fraud_scores, review, side="left")) / n)


def choose_review(
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decline: float,
    budget: float,
) -> BudgetChoice:
    """The lowest review threshold (at most ``decline``) whose review load over the period's
    days stays within ``budget`` cards a day; labels 1 are frauds (others, -1 included, not)."""
    budget = check_budget(budget)
    p = _Scored(days, customers, labels, scores, decline)
    allowed = int(math.floor(budget * p.days + 1e-9))  # card-days the budget covers
    m = p.card_days
    if allowed >= len(m):
        review = float(m[-1]) if len(m) else p.decline  # every card-day fits the budget
    elif allowed == 0:
        review = p.decline
    else:
        review = float(m[allowed - 1])
        above = int(np.count_nonzero(m > review))
        if int(np.count_nonzero(m >= review)) > allowed:  # ties would overshoot the budget
            review = float(m[above - 1]) if above else p.decline
    caught = p.caught(review)
    return BudgetChoice(
        budget,
        review,
        p.decline,
        float(p.load(review)),
        None if caught is None else float(caught),
        len(p.fraud_scores),
        p.days,
    )


def load_curve(
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    decline: float,
    points: int = CURVE_POINTS,
) -> pd.DataFrame:
    """Review threshold, cards a day and share of frauds caught, for up to ``points`` review
    thresholds from the lowest card-day score to ``decline`` (load falling as they rise)."""
    p = _Scored(days, customers, labels, scores, decline)
    if len(p.card_days) == 0:
        grid = np.asarray([p.decline])
    else:
        qs = np.linspace(0.0, 1.0, max(2, points))
        grid = np.unique(np.append(np.quantile(p.card_days, qs), p.decline))
    caught = p.caught(grid)
    return pd.DataFrame(
        {
            "review_threshold": grid,
            "cards_per_day": p.load(grid),
            "fraud_share_caught": np.nan if caught is None else caught,
        }
    )


def at_threshold(
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    review: float,
    decline: float,
) -> tuple[float, float | None]:
    """(cards a day, share of frauds caught) at one pair of thresholds."""
    p = _Scored(days, customers, labels, scores, decline)
    caught = p.caught(review)
    return float(p.load(review)), None if caught is None else float(caught)


def set_thresholds(
    scores: np.ndarray,
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    budget: float | None,
) -> tuple[dict[str, float], BudgetChoice | None]:
    """The validation period's thresholds: quantiles, the review one from ``budget`` if given."""
    thresholds = quantile_thresholds(scores)
    if budget is None:
        return thresholds, None
    chosen = choose_review(days, customers, labels, scores, thresholds["decline"], budget)
    return {**thresholds, "review": chosen.review}, chosen


def daily_load(
    days: np.ndarray, customers: np.ndarray, scores: np.ndarray, review: float, decline: float
) -> pd.Series:
    """Cards to review on each day (0 on a day with payments but none in the band)."""
    scores = np.asarray(scores, dtype=np.float64)
    band = (scores >= review) & (scores < decline)
    frame = pd.DataFrame({"day": np.asarray(days)[band], "card": np.asarray(customers)[band]})
    per_day = frame.groupby("day")["card"].nunique()
    return per_day.reindex(np.unique(days), fill_value=0).astype("int64")
