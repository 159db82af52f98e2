"""Metrics: Card Precision@k as the handbook defines it."""

from __future__ import annotations

import numpy as np
import pytest

from payscore.core.metrics import card_precision_at_k, evaluate


def test_card_precision_uses_card_max_and_drops_detected_cards():
    # Day 0: card A (fraud) scores highest, card B (genuine) second.
    # Day 1: card A again (already detected, must be dropped), card C fraud.
    days = [0, 0, 0, 1, 1, 1]
    cards = ["A", "A", "B", "A", "C", "D"]
    labels = [0, 1, 0, 1, 1, 0]
    scores = [0.9, 0.1, 0.5, 0.99, 0.2, 0.3]
    # k=1: day 0 top card is A (max score 0.9, max label 1) -> 1.0;
    # day 1 without A: D (0.3, genuine) beats C (0.2) -> 0.0.
    assert card_precision_at_k(days, cards, labels, scores, k=1) == pytest.approx(0.5)
    # k=2: day 0 -> A and B, one fraud: 0.5; day 1 -> D and C: 0.5.
    assert card_precision_at_k(days, cards, labels, scores, k=2) == pytest.approx(0.5)


def test_random_scores_give_base_rates():
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.01).astype(int)
    scores = rng.random(20_000)
    days = np.repeat(np.arange(4), 5_000)
    cards = rng.integers(0, 4_000, 20_000)
    m = evaluate(labels, scores, days, cards)
    assert abs(m["auc_roc"] - 0.5) < 0.05
    assert m["average_precision"] < 0.03


def test_evaluate_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        evaluate(np.zeros(10), np.zeros(10), np.zeros(10), np.arange(10))
