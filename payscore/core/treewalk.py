"""The compiled tree walk behind ``ModelArtifact.predict_scores`` (numba).

scikit-learn scores a HistGradientBoosting model one Python call per tree: ~7 us of call
overhead each (2 ms for 300 trees, whatever the batch size), then ~50 ns per row and tree.
This walks every tree for every row in one compiled loop: a batch of 500 rows through 300
trees in ~3 ms instead of ~10, and one row in ~15 us instead of ~3 ms.

The walk takes the same branches as scikit-learn's (``x <= threshold`` goes left; a missing
value goes where the split learned) and sums leaf values tree by tree from the baseline, in
scikit-learn's order, so the raw scores are bit-identical (tests check it).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def raw_scores(
    X: np.ndarray,
    root: np.ndarray,
    value: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    leaf: np.ndarray,
    baseline: float,
) -> np.ndarray:  # pragma: no cover - compiled; its results are tested against scikit-learn
    """Baseline plus every tree's leaf value for each row of ``X`` (C-contiguous float64).

    The trees are concatenated flat arrays: ``root[k]`` is tree k's first node, ``left`` and
    ``right`` are absolute node indices.
    """
    n = X.shape[0]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = baseline
    for k in range(root.shape[0]):  # tree by tree: the same additions as scikit-learn
        start = root[k]
        for i in range(n):
            node = start
            while not leaf[node]:
                x = X[i, feature[node]]
                if x <= threshold[node] or (np.isnan(x) and missing_left[node]):
                    node = left[node]
                else:
                    node = right[node]
            out[i] += value[node]
    return out
