"""Thresholds from a review budget: the load is distinct cards a day in the REVIEW band, the
catch the share of frauds at or above the review threshold; bad budgets are one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from payscore.core.budget import (
    at_threshold,
    check_budget,
    choose_review,
    daily_load,
    load_curve,
    set_thresholds,
)
from payscore.errors import InputError

# Two days. Day 0: card A pays twice in the band (counted once), B once, C is declined only.
DAYS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
CARDS = np.array(["A", "A", "B", "C", "D", "A", "E", "F"])
LABELS = np.array([1, 0, 0, 1, 0, 0, 1, -1])
SCORES = np.array([0.8, 0.6, 0.5, 0.95, 0.1, 0.7, 0.4, 0.2])
DECLINE = 0.9


def test_load_counts_cards_not_payments_and_leaves_declines_out() -> None:
    # At 0.45: day 0 A (0.8, 0.6) and B (0.5) -> 2 cards, C declined; day 1 A (0.7) -> 1.
    load, caught = at_threshold(DAYS, CARDS, LABELS, SCORES, 0.45, DECLINE)
    assert load == pytest.approx(1.5)
    # Frauds: 0.8 and 0.95 flagged, 0.4 not; -1 (unlabelled) is not a fraud.
    assert caught == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("budget", "review", "load"),
    [
        (0.5, 0.8, 0.5),  # one card-day: A on day 0
        (1.0, 0.7, 1.0),  # two: A day 0, A day 1
        (1.5, 0.5, 1.5),
        (2.0, 0.4, 2.0),
        (100.0, 0.1, 3.0),  # more than there is: every card-day below decline is reviewed
        (0.1, DECLINE, 0.0),  # less than one card over the period: no review at all
    ],
)
def test_the_lowest_threshold_within_the_budget(budget: float, review: float, load: float) -> None:
    chosen = choose_review(DAYS, CARDS, LABELS, SCORES, DECLINE, budget)
    assert chosen.review == pytest.approx(review)
    assert chosen.expected_load == pytest.approx(load) and chosen.expected_load <= budget
    assert chosen.days == 2 and chosen.frauds == 3


def test_ties_never_push_the_load_over_the_budget() -> None:
    days = np.zeros(4, dtype=int)
    cards = np.array(["A", "B", "C", "D"])
    scores = np.array([0.6, 0.5, 0.5, 0.3])
    chosen = choose_review(days, cards, np.zeros(4), scores, 0.9, 2)
    assert chosen.review == pytest.approx(0.6) and chosen.expected_load == 1
    assert chosen.fraud_share is None  # no fraud to catch


def test_curve_falls_with_the_threshold_and_matches_the_choice() -> None:
    rng = np.random.default_rng(1)
    n = 5_000
    days = rng.integers(0, 7, n)
    cards = rng.integers(0, 800, n).astype(str)
    labels = (rng.random(n) < 0.02).astype(int)
    scores = np.clip(rng.random(n) * 0.6 + labels * 0.35, 0, 1)
    curve = load_curve(days, cards, labels, scores, 0.97, points=50)
    assert curve["review_threshold"].is_monotonic_increasing
    assert curve["cards_per_day"].is_monotonic_decreasing
    assert curve["fraud_share_caught"].is_monotonic_decreasing
    assert curve["review_threshold"].iloc[-1] == pytest.approx(0.97)
    assert curve["cards_per_day"].iloc[-1] == 0
    chosen = choose_review(days, cards, labels, scores, 0.97, 40)
    load, caught = at_threshold(days, cards, labels, scores, chosen.review, 0.97)
    assert load == pytest.approx(chosen.expected_load) and 39 < load <= 40
    assert caught == pytest.approx(chosen.fraud_share)


def test_set_thresholds_keeps_the_quantile_decline() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random(10_000)
    days = rng.integers(0, 7, 10_000)
    cards = rng.integers(0, 3_000, 10_000)
    plain, none = set_thresholds(scores, days, cards, np.zeros(10_000), None)
    assert none is None and plain["review"] < plain["decline"]
    budgeted, chosen = set_thresholds(scores, days, cards, np.zeros(10_000), 10)
    assert budgeted["decline"] == plain["decline"] and chosen is not None
    assert budgeted["review"] == chosen.review > plain["review"]
    assert chosen.as_metadata()["cards_per_day"] == 10


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), 2_000_000, True, "5"])
def test_a_bad_budget_is_one_clear_error(bad: object) -> None:
    with pytest.raises(InputError, match="--review-budget must be"):
        check_budget(bad)


def test_daily_load_counts_each_day_with_zero_days_kept() -> None:
    per_day = daily_load(DAYS, CARDS, SCORES, 0.75, DECLINE)
    assert per_day.to_dict() == {0: 1, 1: 0}  # day 0: A (0.8); day 1: A's 0.7 is below
    assert daily_load(DAYS, CARDS, SCORES, 0.45, DECLINE).to_dict() == {0: 2, 1: 1}
