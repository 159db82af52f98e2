"""Drift of live traffic from a model's reference period: reference bins and PSI. Pure.

At training, ``build_reference`` cuts each model feature (on the training period) and the
score (on the validation period, out of sample) into bins and records the share of payments
in each; it goes into the model's metadata under ``drift_reference``. A running consumer
counts every decided payment into the champion's bins (``Binner``: one ``searchsorted`` per
column of the batch's feature matrix) and the dashboard compares the counts of a range with
the reference by the population stability index. See docs/model.md, "Drift".

Bins are right-closed, ``(edges[i-1], edges[i]]``, with one open bin below the first edge and
one above the last, plus a last bin for a missing (NaN) value: ``len(edges) + 2`` in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REFERENCE_KEY = "drift_reference"
FORMAT = 1
SCORE = "score"  # the series name of the model's score (no engine feature has this name)
FEATURE_BINS = 10
# Deciles, then the tail where the review and decline thresholds sit (top 2 % and 0.3 %).
SCORE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.997)
MAX_BINS = 16  # bin columns of ``feature_histograms``: at most 14 edges
PSI_FLOOR = 1e-4  # a share below this (an empty bin) counts as this: ln(0) has no value
PSI_WATCH, PSI_ACT = 0.1, 0.25  # the usual bands: < 0.1 stable, < 0.25 watch, else shifted
EDGE_SAMPLE = 500_000  # rows a column's edges are taken from (its shares use every row)


def band(psi: float) -> str:
    """The usual reading of a PSI value."""
    if psi < PSI_WATCH:
        return "stable"
    return "watch" if psi < PSI_ACT else "shifted"


def bin_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin (see the module doc); NaN goes to the last bin, ``len(edges) + 1``."""
    codes = np.searchsorted(edges, values, side="left")
    missing = np.isnan(values)
    if missing.any():
        codes[missing] = len(edges) + 1
    return codes


def _round(values: Any) -> np.ndarray:
    """Edges at 6 significant digits (short JSON); the reference is binned on these."""
    out = sorted({float(f"{float(v):.6g}") for v in values})
    return np.asarray(out, dtype=np.float64)


def _top_trimmed(edges: np.ndarray, top: float) -> np.ndarray:
    """Edges below the largest value: an edge at the maximum leaves an empty bin above it."""
    return edges[edges < top]


def feature_edges(column: np.ndarray, bins: int = FEATURE_BINS) -> np.ndarray:
    """About ``bins`` bins of equal share, with every value holding ``1/bins`` or more (a
    pile of zeros, a flag) in a bin of its own and the rest cut by quantiles of what is left,
    so a feature that is 0 for 95 % of payments still gets bins for the other 5 %."""
    x = column[~np.isnan(column)]
    if not len(x):
        return np.empty(0)
    values, counts = np.unique(x, return_counts=True)
    if len(values) <= bins:
        return _round(values[:-1])  # a few values: one bin each
    atoms = np.flatnonzero(counts >= len(x) / bins)
    edges = set(values[atoms].tolist())
    edges.update(values[atoms[atoms > 0] - 1].tolist())  # isolates each pile from below
    rest = x[~np.isin(x, values[atoms])]
    k = bins - len(atoms)
    if len(rest) and k > 1:
        edges.update(np.quantile(rest, np.arange(1, k) / k).tolist())
    out = _top_trimmed(_round(edges), float(values[-1]))
    if len(out) > MAX_BINS - 2:  # cannot happen for bins <= 10; bounded all the same
        out = _top_trimmed(_round(np.quantile(x, np.arange(1, bins) / bins)), float(values[-1]))
    return out


def score_edges(scores: np.ndarray) -> np.ndarray:
    """Quantile edges of the reference scores: deciles, then the tail (``SCORE_QUANTILES``)."""
    x = scores[~np.isnan(scores)]
    if not len(x):
        return np.empty(0)
    return _top_trimmed(_round(np.quantile(x, SCORE_QUANTILES)), float(x.max()))


def shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    """The share of ``values`` in each bin of ``edges`` (``len(edges) + 2`` of them)."""
    counts = np.bincount(bin_codes(values, edges), minlength=len(edges) + 2)
    return [round(float(c) / max(len(values), 1), 6) for c in counts]


def _sample(x: np.ndarray) -> np.ndarray:
    if len(x) <= EDGE_SAMPLE:
        return x
    pick = np.random.default_rng(0).choice(len(x), EDGE_SAMPLE, replace=False)
    return x[np.sort(pick)]


@dataclass(frozen=True)
class Series:
    """One feature's (or the score's) reference bins."""

    name: str
    edges: tuple[float, ...]
    proportions: tuple[float, ...]  # len(edges) + 2: the bins, then missing

    def as_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "proportions": list(self.proportions)}


def series(name: str, values: np.ndarray, edges: np.ndarray) -> Series:
    return Series(name, tuple(float(e) for e in edges), tuple(shares(values, edges)))


def build_reference(
    names: Sequence[str],
    columns: Sequence[np.ndarray],
    scores: np.ndarray,
    *,
    feature_rows: int,
    score_period: str,
) -> dict[str, Any]:
    """The ``drift_reference`` metadata: each feature's bins from its training ``columns``
    (in ``names`` order), the score's from ``scores`` of ``score_period``."""
    out: dict[str, Any] = {
        "format": FORMAT,
        "feature_period": "train",
        "feature_payments": int(feature_rows),
        "score_period": score_period,
        "score_payments": int(len(scores)),
        "features": {},
    }
    for name, column in zip(names, columns, strict=True):
        out["features"][name] = series(name, column, feature_edges(_sample(column))).as_json()
    out[SCORE] = series(SCORE, scores, score_edges(_sample(scores))).as_json()
    return out


def training_reference(
    names: Sequence[str],
    X: np.ndarray,
    cols: Sequence[int],
    train: np.ndarray,
    validation: np.ndarray,
    score_rows: Callable[[np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """The reference of a model trained on ``X[train]`` (columns ``cols`` are its features
    ``names``): features from the training rows; the score from the validation rows, scored
    out of sample by ``score_rows(mask)`` (the training rows if there is no validation)."""
    part = validation if validation.any() else train
    return build_reference(
        names,
        [X[train, col] for col in cols],
        np.asarray(score_rows(part), dtype=np.float64),
        feature_rows=int(train.sum()),
        score_period="validation" if part is validation else "train",
    )


@dataclass(frozen=True)
class Reference:
    """A model's reference read back from its metadata: the score first, then features."""

    series: tuple[Series, ...]
    score_period: str
    feature_payments: int
    score_payments: int

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Reference | None:
        """None for a model trained before references existed (or a malformed one)."""
        raw = metadata.get(REFERENCE_KEY)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            return None
        try:
            items = [(SCORE, raw[SCORE]), *raw["features"].items()]
            out = []
            for name, s in items:
                edges = tuple(float(e) for e in s["edges"])
                props = tuple(float(p) for p in s["proportions"])
                if len(props) != len(edges) + 2 or len(props) > MAX_BINS:
                    return None
                out.append(Series(str(name), edges, props))
            return cls(
                tuple(out),
                str(raw.get("score_period", "")),
                int(raw.get("feature_payments", 0)),
                int(raw.get("score_payments", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def get(self, name: str) -> Series | None:
        return next((s for s in self.series if s.name == name), None)


def psi(expected: Sequence[float], counts: Sequence[int]) -> float:
    """Population stability index of live ``counts`` against ``expected`` shares:
    sum over bins of (a - e) * ln(a / e), each share floored at ``PSI_FLOOR``. NaN if no
    payment was counted."""
    n = float(sum(counts))
    if n <= 0:
        return math.nan
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(counts, dtype=np.float64) / n, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable names of the bins of ``edges`` (3 significant digits): "<= 0", "(0, 2.5]",
    "> 2.5", "missing"."""
    if not edges:
        return ["all", "missing"]
    out = [f"<= {edges[0]:.3g}"]
    out += [f"({lo:.3g}, {hi:.3g}]" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return [*out, f"> {edges[-1]:.3g}", "missing"]


@dataclass(frozen=True)
class Codes:
    """Each decided payment's bin per series, aligned with the batch's decision rows."""

    model_version: str
    names: tuple[str, ...]
    codes: np.ndarray  # (rows, len(names)) uint8


class Binner:
    """Bins a batch's feature matrix and scores into one model's reference bins."""

    def __init__(self, model_version: str, reference: Reference, feature_names: Sequence[str]):
        position = {n: i for i, n in enumerate(feature_names)}
        kept = [s for s in reference.series if s.name == SCORE or s.name in position]
        self.model_version = model_version
        self.names = tuple(s.name for s in kept)  # the score first
        self._edges = [np.asarray(s.edges, dtype=np.float64) for s in kept]
        self._cols = np.array([position[s.name] for s in kept[1:]], dtype=np.intp)
        self._missing = np.array([len(e) + 1 for e in self._edges], dtype=np.uint8)

    def codes(self, X: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(rows, series) bin codes for feature rows ``X`` (engine columns) and their scores.

        The series are gathered once into rows of one array (a contiguous row per
        ``searchsorted``) and NaN is looked for once: per column, each cost about as much as
        the search itself."""
        values = np.empty((len(self.names), len(scores)), dtype=np.float64)
        values[0] = scores
        values[1:] = X[:, self._cols].T
        out = np.empty(values.shape, dtype=np.uint8)
        for j, edges in enumerate(self._edges):
            out[j] = np.searchsorted(edges, values[j], side="left")
        missing = np.isnan(values)
        if missing.any():
            out = np.where(missing, self._missing[:, None], out)
        return out.T


def counts_of(codes: np.ndarray) -> np.ndarray:
    """(series, MAX_BINS) counts of a code matrix: one ``bincount`` for every column."""
    k = codes.shape[1]
    flat = codes.astype(np.intp) + np.arange(k, dtype=np.intp) * MAX_BINS
    return np.bincount(flat.ravel(), minlength=k * MAX_BINS).reshape(k, MAX_BINS)


class BatchBins:
    """The pipeline's side: the champion's ``Binner`` and the codes of the batch being scored.

    ``observe`` is called for each scored chunk of a batch (the whole matrix, or rows one by
    one after a failure), ``take`` then returns the codes in the order of the batch's rows.
    """

    def __init__(self) -> None:
        self._key: tuple[str, tuple[str, ...]] | None = None
        self._binner: Binner | None = None
        self._chunks: list[tuple[Sequence[str], np.ndarray]] = []

    def _binner_for(self, artifact: Any, feature_names: Sequence[str]) -> Binner | None:
        key = (str(artifact.version), tuple(feature_names))
        if key != self._key:  # a new champion (or engine): its reference, once
            reference = Reference.from_metadata(artifact.metadata)
            self._binner = None if reference is None else Binner(key[0], reference, key[1])
            self._key = key
            self._chunks.clear()  # models change between batches only; never mix two
        return self._binner

    def observe(
        self,
        artifact: Any,
        feature_names: Sequence[str],
        ids: Sequence[str],
        X: np.ndarray,
        scores: Sequence[float],
    ) -> None:
        """Bin one scored chunk (``artifact``: the deciding model, with ``version`` and
        ``metadata``; ``X`` in ``feature_names`` columns); nothing without a reference."""
        binner = self._binner_for(artifact, feature_names)
        if binner is not None:
            values = np.asarray(scores, dtype=np.float64)
            self._chunks.append((ids, binner.codes(X, values)))

    def take(self, ids: Sequence[str]) -> Codes | None:
        """The codes of the payments ``ids`` (the batch's decision rows, in order); forgets
        every chunk. None when nothing was binned."""
        chunks, self._chunks = self._chunks, []
        binner = self._binner
        if not chunks or binner is None:
            return None
        if len(chunks) == 1 and list(chunks[0][0]) == list(ids):
            return Codes(binner.model_version, binner.names, chunks[0][1])
        row = {tx: codes[i] for chunk_ids, codes in chunks for i, tx in enumerate(chunk_ids)}
        if any(tx not in row for tx in ids):
            return None  # cannot happen (every decided row was binned): count nothing then
        out = np.stack([row[tx] for tx in ids]) if ids else np.empty((0, len(binner.names)))
        return Codes(binner.model_version, binner.names, out.astype(np.uint8))
