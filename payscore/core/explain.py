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

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from payscore.errors import PayscoreError


class NotExplainable(PayscoreError):
    """The model is not a tree model payscore can walk (another estimator, categorical splits)."""


class Reason(NamedTuple):
    """One feature's push on a payment's score, with its value and a readable sentence (a
    tuple: every decision gets up to three, and a tuple is made several times faster)."""

    feature: str
    value: float
    contribution: float  # in raw (log-odds) units; positive raises the score
    text: str


def _walk(artifact: Any, engine_feature_names: Sequence[str], X: np.ndarray) -> Any:
    """(flat trees, raw scores, C) from one compiled walk (``explain_walk.py``)."""
    flat = artifact._flat_trees()  # noqa: SLF001 - the walk ModelArtifact checked at load
    if flat is None:
        raise NotExplainable(f"model {artifact.version} is not a walkable tree model")
    from payscore.core.explain_walk import scores_and_contributions  # numba: on first use

    a = flat.a
    Xm = np.ascontiguousarray(X[:, artifact.columns_for(engine_feature_names)], dtype=np.float64)
    raw = np.empty(len(Xm), dtype=np.float64)
    out = np.zeros(Xm.shape, dtype=np.float64)
    fields = ("root", "value", "feature", "threshold", "missing_left", "left", "right", "leaf")
    scores_and_contributions(Xm, tuple(a[k] for k in fields), flat.baseline, raw, out)
    return flat, raw, out


def contributions(artifact: Any, engine_feature_names: Sequence[str], X: np.ndarray) -> Any:
    """(bias, C): C[i, j] is the contribution of the model's j-th feature to row i's raw
    score; bias + C.sum(axis=1) is the raw score. ``X`` has the engine's columns."""
    flat, _, out = _walk(artifact, engine_feature_names, X)
    bias = flat.baseline + float(flat.a["value"][flat.a["root"]].sum())
    return bias, out


def _fmt_ratio(what: str) -> Callable[[float, Mapping[str, float]], str]:
    return lambda v, _: f"amount {v:.1f}x {what}"


def _amount(v: float, row: Mapping[str, float]) -> str:
    mean = row.get("customer_avg_amount_30day", 0.0)
    if mean > 0 and row.get("customer_nb_tx_30day", 0.0) > 1:
        return f"amount {v:.2f} ({v / mean:.1f}x the card's 30-day mean)"
    return f"amount {v:.2f}"


#: Reason-code templates by feature: value, and the payment's whole row for context.
TEMPLATES: dict[str, Callable[[float, Mapping[str, float]], str]] = {
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
    "terminal_last_fraud_ratio": lambda v, _: (
        f"terminal's last known fraud was {v:.1f}x its card's median"
        if v >= 0
        else "no known fraud"
    ),
    "amount_whole": lambda v, _: (
        f"amount of {v:.0f} whole units" if v < 254 else "amount of 254 whole units or more"
    ),
}


#: Templates that read other features of the payment's row (the rest read only the value).
ROW_TEMPLATES = frozenset({"amount"})


def _card_count(days: int) -> Callable[[float, Mapping[str, float]], str]:
    span = "24 h" if days == 1 else f"{days} days"
    return lambda v, _: f"{v:.0f} payments by this card in {span}"


def _terminal_risk(days: int) -> Callable[[float, Mapping[str, float]], str]:
    return lambda v, _: f"{v:.0%} of the terminal's payments in its {days}-day window were frauds"


for _w in (1, 7, 30):
    TEMPLATES[f"customer_nb_tx_{_w}day"] = _card_count(_w)
    TEMPLATES[f"terminal_risk_{_w}day"] = _terminal_risk(_w)


def reason_text(feature: str, value: float, row: Mapping[str, float]) -> str:
    """The sentence for one feature's value; a plain ``name = value`` if there is no template."""
    if value != value:  # NaN; cheaper than np.isnan on a Python float, once per reason
        return f"{feature} unknown"
    template = TEMPLATES.get(feature)
    if template is None and feature.startswith("customer_nb_tx_") and feature.endswith("s"):
        seconds = feature.removeprefix("customer_nb_tx_").removesuffix("s")
        return f"{value:.0f} payments by this card in {seconds} s"
    if template is None:
        return f"{feature} = {value:.4g}"
    return template(value, row)


class _Row(Mapping[str, float]):
    """One payment's feature values by name, read from its matrix row only when a template
    asks (only the amount's does): building a dict per payment costs more than the texts."""

    __slots__ = ("_X", "_i", "_index")

    def __init__(self, X: np.ndarray, i: int, index: dict[str, int]) -> None:
        self._X = X
        self._i = i
        self._index = index

    def __getitem__(self, name: str) -> float:
        return float(self._X[self._i, self._index[name]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def explainable(artifact: Any) -> bool:
    """Whether the model is one payscore can walk (``NotExplainable`` otherwise)."""
    return artifact._flat_trees() is not None  # noqa: SLF001 - checked at load


def scored_contributions(
    artifact: Any, engine_feature_names: Sequence[str], X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, C) in one compiled walk: the scores are bit for bit ``predict_scores``'s (same
    additions in the same order, same sigmoid), C as in ``contributions``."""
    from scipy.special import expit

    _, raw, out = _walk(artifact, engine_feature_names, X)
    return np.clip(np.asarray(expit(raw), dtype=np.float64), 0.0, 1.0), out


def explain(
    artifact: Any,
    engine_feature_names: Sequence[str],
    X: np.ndarray,
    top: int = 3,
    C: np.ndarray | None = None,
) -> list[list[Reason]]:
    """For each row of ``X`` (engine columns), the ``top`` features that raised its score
    most, largest first (none when nothing raised it). ``C``: the rows' contributions when
    already computed (``scored_contributions``), else they are computed here.

    The one explanation of a payment: the consumer, ``replay-dlq`` and ``payscore score`` all
    come here, so the same payment reads the same everywhere."""
    if C is None:
        _, C = contributions(artifact, engine_feature_names, X)
    names = artifact.feature_names
    index = {n: i for i, n in enumerate(engine_feature_names)}
    model_cols = [index[n] for n in names]
    n = len(C)
    if n == 0 or top <= 0:
        return [[] for _ in range(n)]
    order = np.argsort(-C, axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(C, order, axis=1)
    values = X[np.arange(n)[:, None], np.asarray(model_cols)[order]]
    order_l, picked_l, values_l = order.tolist(), picked.tolist(), values.tolist()
    # A sentence depends on the feature and its value only (the amount's also on the row):
    # within a batch the same terminal or count values recur, so each is written once.
    written: dict[tuple[int, float], str] = {}
    out: list[list[Reason]] = []
    for i in range(n):
        reasons = []
        for j, c, v in zip(order_l[i], picked_l[i], values_l[i], strict=True):
            if c <= 0:
                break  # sorted: nothing after it raised the score either
            name = names[j]
            if name in ROW_TEMPLATES:
                text = reason_text(name, v, _Row(X, i, index))
            else:
                text = written.get((j, v)) or written.setdefault((j, v), reason_text(name, v, {}))
            reasons.append(Reason(name, v, c, text))
        out.append(reasons)
    return out


#: The longest explanation stored with a decision (``scored_transactions.explanation``).
MAX_EXPLANATION_CHARS = 500


def explanation_text(reasons: Sequence[Reason]) -> str:
    """A payment's reasons as one line an analyst reads ("; " between them), cut to
    ``MAX_EXPLANATION_CHARS``: what the consumer stores and the dashboard shows."""
    text = "; ".join(r.text for r in reasons)
    if len(text) > MAX_EXPLANATION_CHARS:
        text = text[: MAX_EXPLANATION_CHARS - 3] + "..."
    return text
