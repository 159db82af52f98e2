"""The decision-path walk behind ``explain.contributions``, compiled with numba like
``treewalk.py`` (and cached the same way): per row and tree, each split's change of node
value is credited to the split's feature, and the leaf values are summed as scoring sums
them. Same branches as the scoring walk."""

from __future__ import annotations

import numba
import numpy as np

from payscore.core.treewalk import _cached_in_our_directory  # the one numba cache policy


def _scores_and_contributions(
    X: np.ndarray, trees: tuple[np.ndarray, ...], baseline: float, raw: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled; tested against predict_scores and _contributions
    """Scoring and explaining in one walk: ``raw[i]`` gets the baseline plus every tree's leaf
    value in ``treewalk._walk``'s order (so the same bits), ``out`` the path contributions.
    One pass over the trees instead of two: the explanation adds only the accumulation."""
    root, value, feature, threshold, missing_left, left, right, leaf = trees
    n = X.shape[0]
    for i in range(n):
        raw[i] = baseline
    for k in range(root.shape[0]):
        start = root[k]
        for i in range(n):
            node = start
            here = value[node]
            while not leaf[node]:
                f = feature[node]
                x = X[i, f]
                if x <= threshold[node] or (np.isnan(x) and missing_left[node]):
                    node = left[node]
                else:
                    node = right[node]
                there = value[node]
                out[i, f] += there - here
                here = there
            raw[i] += value[node]


scores_and_contributions = _cached_in_our_directory(
    numba.njit(nogil=True)(_scores_and_contributions)
)
