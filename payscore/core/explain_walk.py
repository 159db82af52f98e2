"""The decision-path walk behind ``explain.contributions``, compiled with numba like
``treewalk.py`` (and cached the same way): per row and tree, each split's change of node
value is credited to the split's feature. Same branches as the scoring walk."""

from __future__ import annotations

import numba
import numpy as np

from payscore.core.treewalk import _cached_in_our_directory  # the one numba cache policy


def _contributions(
    X: np.ndarray, trees: tuple[np.ndarray, ...], out: np.ndarray
) -> None:  # pragma: no cover - compiled; tested through explain.contributions
    """Add to ``out[i, f]`` every move of row i's path at a split on feature f; ``trees`` is
    (root, value, feature, threshold, missing_left, left, right, leaf), the flat arrays."""
    root, value, feature, threshold, missing_left, left, right, leaf = trees
    n = X.shape[0]
    for k in range(root.shape[0]):
        start = root[k]
        for i in range(n):
            node = start
            while not leaf[node]:
                f = feature[node]
                x = X[i, f]
                if x <= threshold[node] or (np.isnan(x) and missing_left[node]):
                    child = left[node]
                else:
                    child = right[node]
                out[i, f] += value[child] - value[node]
                node = child


path_contributions = _cached_in_our_directory(numba.njit(nogil=True)(_contributions))
