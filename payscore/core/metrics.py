"""The handbook's evaluation metrics: AUC ROC, average precision and Card Precision@k.

Card Precision@k follows the Fraud Detection Handbook (ch. 4): per day, drop cards already
detected on earlier days, take each card's highest score and label, rank the cards by score,
and count the fraudulent cards among the top k; the result is the mean over the days.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

METRIC_NAMES = ("auc_roc", "average_precision", "card_precision_at_100")


def card_precision_at_k(
    days: Sequence[int] | np.ndarray,
    customers: Sequence[object] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    k: int = 100,
) -> float:
    """Mean over days of the share of fraudulent cards among the k highest-scored cards."""
    frame = pd.DataFrame(
        {
            "day": np.asarray(days),
            "customer": np.asarray(customers),
            "label": np.asarray(labels, dtype=np.int64),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
    if frame.empty:
        raise ValueError("no transactions to evaluate")
    detected: set[object] = set()
    per_day = []
    for day in sorted(frame["day"].unique()):
        today = frame[frame["day"] == day]
        today = today[~today["customer"].isin(detected)]
        cards = today.groupby("customer")[["score", "label"]].max()
        top = cards.sort_values("score", ascending=False).head(k)
        found = top.index[top["label"] == 1].tolist()
        per_day.append(len(found) / k)
        detected.update(found)
    return float(np.mean(per_day))


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    days: np.ndarray,
    customers: np.ndarray,
    k: int = 100,
) -> dict[str, float]:
    """AUC ROC, average precision and CP@k over pooled test transactions."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min(initial=1) == labels.max(initial=0) or len(labels) == 0:
        raise ValueError("the test period needs both fraudulent and genuine payments")
    return {
        "auc_roc": float(roc_auc_score(labels, scores)),
        "average_precision": float(average_precision_score(labels, scores)),
        "card_precision_at_100": card_precision_at_k(days, customers, labels, scores, k),
    }
