"""Why a payment scored high: per-feature contributions along its decision paths, and reason
codes an analyst can read.

For the default model (binary HistGradientBoosting, scored by the flat trees of ``model.py``)
each split on a payment's path moves the raw score from the node's value to the child's; that
move is credited to the split's feature (the decision-path method, "Saabas"). Per payment the
contributions add up exactly, up to float rounding, to the raw score minus the bias (baseline
plus every tree's root value). It is one more compiled walk of the same trees
(``explain_walk.py``): TreeSHAP would weigh every feature subset, costing far more per payment,
for reasons an analyst reads the same way. Pure: numpy and numba only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payscore.errors import PayscoreError


class NotExplainable(PayscoreError):
    """The model is not a tree model payscore can walk (another estimator, categorical splits)."""


@dataclass(frozen=True)
class Reason:
    """One feature's push on a payment's score, with its value and a readable sentence."""

    feature: str
    value: float
    contribution: float  # in raw (log-odds) units; positive raises the score
    text: str


def contributions(artifact: Any, engine_feature_names: Sequence[str], X: np.ndarray) -> Any:
    """(bias, C): C[i, j] is the contribution of the model's j-th feature to row i's raw
    score; bias + C.sum(axis=1) is the raw score. ``X`` has the engine's columns."""
    flat = artifact._flat_trees()  # noqa: SLF001 - the walk ModelArtifact checked at load
    if flat is None:
        raise NotExplainable(f"model {artifact.version} is not a walkable tree model")
    a = flat.a
    Xm = np.ascontiguousarray(X[:, artifact.columns_for(engine_feature_names)], dtype=np.float64)
    out = np.zeros(Xm.shape, dtype=np.float64)
    from payscore.core.explain_walk import path_contributions  # numba: on first use

    fields = ("root", "value", "feature", "threshold", "missing_left", "left", "right", "leaf")
    path_contributions(Xm, tuple(a[k] for k in fields), out)
    bias = flat.baseline + float(a["value"][a["root"]].sum())
    return bias, out


def _fmt_ratio(what: str) -> Callable[[float, dict[str, float]], str]:
    return lambda v, _: f"amount {v:.1f}x {what}"


def _amount(v: float, row: dict[str, float]) -> str:
    mean = row.get("customer_avg_amount_30day", 0.0)
    if mean > 0 and row.get("customer_nb_tx_30day", 0.0) > 1:
        return f"amount {v:.2f} ({v / mean:.1f}x the card's 30-day mean)"
    return f"amount {v:.2f}"


#: Reason-code templates by feature: value, and the payment's whole row for context.
TEMPLATES: dict[str, Callable[[float, dict[str, float]], str]] = {
    "amount": _amount,
    "is_night": lambda v, _: "night-time payment (before 07:00 UTC)" if v else "daytime payment",
    "is_weekend": lambda v, _: "weekend payment" if v else "weekday payment",
    "customer_amount_ratio_median_30day": _fmt_ratio("the card's 30-day median"),
    "customer_amount_ratio_max_30day": _fmt_ratio("the card's largest payment in 30 days"),
    "customer_amount_zscore_30day": lambda v, _: (
        f"amount {v:.1f} standard deviations from the card's 30-day mean"
    ),
    "customer_max_ratio_7day": lambda v, _: (
        f"the card paid {v:.1f}x its 30-day median in the last 7 days"
    ),
    "customer_nb_high_14day": lambda v, _: (
        f"{v:.0f} payments above 3x the card's median in 14 days"
    ),
    "customer_seconds_since_last": lambda v, _: f"{v:,.0f} s since the card's previous payment",
    "terminal_nb_fraud_30day": lambda v, _: (
        f"terminal had {v:.0f} known frauds in its 30-day window (labels 7 days late)"
    ),
    "terminal_nb_fraud_customers_30day": lambda v, _: (
        f"{v:.0f} cards defrauded at this terminal in its 30-day window"
    ),
    "terminal_fraud_run_days": lambda v, _: (
        f"terminal in a run of known frauds for {v:.1f} days" if v >= 0 else "no fraud run"
    ),
    "terminal_last_known_fraud": lambda v, _: (
        "terminal's latest labelled payment was a fraud" if v else "terminal's latest label genuine"
    ),
    "terminal_days_since_last_fraud": lambda v, _: (
        f"terminal's last known fraud {v:.1f} days earlier" if v >= 0 else "no known fraud"
    ),
    "terminal_last_fraud_amount": lambda v, _: f"terminal's last known fraud was {v:.2f}",
    "terminal_nb_tx_recent_1day": lambda v, _: f"{v:.0f} payments at this terminal in 24 h",
}


def _card_count(days: int) -> Callable[[float, dict[str, float]], str]:
    span = "24 h" if days == 1 else f"{days} days"
    return lambda v, _: f"{v:.0f} payments by this card in {span}"


def _terminal_risk(days: int) -> Callable[[float, dict[str, float]], str]:
    return lambda v, _: f"{v:.0%} of the terminal's payments in its {days}-day window were frauds"


for _w in (1, 7, 30):
    TEMPLATES[f"customer_nb_tx_{_w}day"] = _card_count(_w)
    TEMPLATES[f"terminal_risk_{_w}day"] = _terminal_risk(_w)


def reason_text(feature: str, value: float, row: dict[str, float]) -> str:
    """The sentence for one feature's value; a plain ``name = value`` if there is no template."""
    if np.isnan(value):
        return f"{feature} unknown"
    template = TEMPLATES.get(feature)
    if template is None and feature.startswith("customer_nb_tx_") and feature.endswith("s"):
        seconds = feature.removeprefix("customer_nb_tx_").removesuffix("s")
        return f"{value:.0f} payments by this card in {seconds} s"
    if template is None:
        return f"{feature} = {value:.4g}"
    return template(value, row)


def explain(
    artifact: Any, engine_feature_names: Sequence[str], X: np.ndarray, top: int = 3
) -> list[list[Reason]]:
    """For each row of ``X`` (engine columns), the ``top`` features that raised its score
    most, largest first (none when nothing raised it)."""
    _, C = contributions(artifact, engine_feature_names, X)
    names = artifact.feature_names
    index = {n: i for i, n in enumerate(engine_feature_names)}
    out: list[list[Reason]] = []
    for i in range(len(C)):
        row = {n: float(X[i, index[n]]) for n in names}
        order = np.argsort(-C[i], kind="stable")[:top]
        out.append(
            [
                Reason(
                    names[j],
                    row[names[j]],
                    float(C[i, j]),
                    reason_text(names[j], row[names[j]], row),
                )
                for j in order
                if C[i, j] > 0
            ]
        )
    return out
