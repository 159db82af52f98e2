"""The model artifact: a scikit-learn estimator plus the metadata needed to trust and use it.

The files on disk and the checks made before unpickling (digest file, sidecar, pinned digest,
HMAC signature, scikit-learn version) are in ``core/artifact.py``; this module pickles and
unpickles the estimator and scores with it.

Scoring uses a compiled walk of the trees (``core/treewalk.py``), built from private
scikit-learn attributes. It is built under a guard and compared with ``predict_proba`` on a
probe matrix the first time it is needed; on any failure or difference scoring falls back to
scikit-learn's own predict, with one warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier

from payscore.core import artifact as files
from payscore.core.artifact import FORMAT, Secret, Trust
from payscore.errors import ModelError

__all__ = ["FORMAT", "ModelArtifact", "library_versions", "load_artifact", "save_artifact"]

log = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a pickled estimator."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


class ModelArtifact:
    """An estimator, the feature columns it reads (by name), a content-derived version, metadata."""

    def __init__(
        self,
        estimator: Any,
        feature_names: Sequence[str],
        metadata: dict[str, Any],
        version: str | None = None,
    ) -> None:
        self.estimator = estimator
        self.feature_names = tuple(feature_names)
        self.metadata = dict(metadata)
        self.metadata.setdefault("library_versions", library_versions())
        self.version = version or content_version(
            pickle.dumps(estimator, protocol=5), self.feature_names, self.metadata
        )
        self._columns: dict[tuple[str, ...], np.ndarray] = {}
        self._flat: _FlatTrees | None = None
        self._flat_built = False  # _flat stays None after building: categorical splits
        self._raw_ok = False  # scikit-learn's private single-thread predict checked equal
        self.scoring_path = "not built yet"

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.metadata.get("thresholds", {}))

    def columns_for(self, engine_feature_names: Sequence[str]) -> np.ndarray:
        """Indices of this model's features in a FeatureEngine matrix (cached per layout)."""
        key = tuple(engine_feature_names)
        cols = self._columns.get(key)
        if cols is None:
            position = {name: i for i, name in enumerate(key)}
            missing = [n for n in self.feature_names if n not in position]
            if missing:
                raise ModelError(
                    f"model {self.version} needs features the engine does not produce: "
                    f"{', '.join(missing)}"
                )
            cols = self._columns[key] = np.array([position[n] for n in self.feature_names])
        return cols

    def predict_scores(self, engine_feature_names: Sequence[str], X: np.ndarray) -> np.ndarray:
        """Fraud probability in [0, 1] for each row of a FeatureEngine matrix."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(engine_feature_names):
            raise ValueError("X must be (n, len(engine_feature_names))")
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        cols = self.columns_for(engine_feature_names)
        Xm = X[:, cols]
        flat = self._flat_trees()
        if flat is not None:
            return np.clip(flat.predict_proba1(Xm), 0.0, 1.0)
        if X.shape[0] <= _SINGLE_THREAD_ROWS and self._raw_ok:
            # OpenMP start-up and spinning cost more than the trees on a busy machine.
            raw = self.estimator._raw_predict(Xm, n_threads=1)
            proba = self.estimator._loss.predict_proba(raw)
        else:
            proba = self.estimator.predict_proba(Xm)
        return np.clip(proba[:, 1].astype(np.float64), 0.0, 1.0)

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the tree walk now, not on the first batch."""
        flat = self._flat_trees()
        if flat is not None:
            flat.predict_proba1(np.zeros((1, len(self.feature_names))))

    def _flat_trees(self) -> _FlatTrees | None:
        if not self._flat_built:
            self._flat_built = True
            self._flat, self._raw_ok, self.scoring_path = _checked_fast_paths(self)
        return self._flat

    def probe(self, rows: int = 256, seed: int = 0) -> np.ndarray:
        """Rows to compare scoring paths on: within the training ranges, some NaN, and every
        split threshold of the trees exactly and just above (where ``<=`` and ``<`` differ)."""
        rng = np.random.default_rng(seed)
        n = len(self.feature_names)
        ranges = self.metadata.get("feature_ranges") or {}
        lo = np.array([float(ranges.get(f, (0.0, 1.0))[0]) for f in self.feature_names])
        hi = np.array([float(ranges.get(f, (0.0, 1.0))[1]) for f in self.feature_names])
        span = np.where(hi > lo, hi - lo, 1.0)
        X = lo - 0.1 * span + rng.random((rows, n)) * 1.2 * span
        X[rng.random(X.shape) < 0.1] = np.nan
        # Without recorded ranges, also try values over several orders of magnitude.
        scale = 10.0 ** rng.integers(-2, 6, size=(rows // 2, n))
        wide = (rng.random((rows // 2, n)) * 2 - 1) * scale
        return np.vstack([X, wide, self._threshold_rows(rng)])

    def _threshold_rows(self, rng: np.random.Generator) -> np.ndarray:
        try:
            flat = _FlatTrees.build(self.estimator) if _is_hist_gb_binary(self.estimator) else None
        except Exception:  # a broken build is caught (and reported) by _checked_fast_paths
            flat = None
        n = len(self.feature_names)
        if flat is None:
            return np.empty((0, n))
        split = ~flat.a["leaf"]
        feature, threshold = flat.a["feature"][split], flat.a["threshold"][split]
        if not len(feature) or feature.min() < 0 or feature.max() >= n:
            return np.empty((0, n))
        pick = rng.integers(0, len(feature), size=(256, n))
        rows = np.full((256, n), np.nan)
        for j in range(n):
            mine = threshold[feature == j]
            if len(mine):
                rows[:, j] = mine[pick[:, j] % len(mine)]
        above = np.nextafter(rows, np.inf)
        return np.vstack([rows, above])


_SINGLE_THREAD_ROWS = 4096


def _checked_fast_paths(art: ModelArtifact) -> tuple[_FlatTrees | None, bool, str]:
    """The compiled walk and scikit-learn's single-thread predict, each kept only if it scores a
    probe exactly as ``predict_proba`` does. Both read private scikit-learn names, which a
    release may change: then scoring falls back to ``predict_proba`` with one warning."""
    est = art.estimator
    if not _is_hist_gb_binary(est):
        return None, False, "scikit-learn predict_proba"
    probe = art.probe()
    expected = est.predict_proba(probe)[:, 1]
    flat: _FlatTrees | None = None
    problems = []
    categorical = False
    try:
        flat = _FlatTrees.build(est)
        categorical = flat is None
        if flat is not None and not np.array_equal(flat.predict_proba1(probe), expected):
            flat = None
            problems.append("the compiled tree walk scores a probe differently")
    except Exception as e:
        flat = None
        problems.append(f"the compiled tree walk cannot be built ({type(e).__name__}: {e})")
    raw_ok = False
    if flat is None:
        try:
            raw = est._raw_predict(probe, n_threads=1)
            raw_ok = bool(np.array_equal(est._loss.predict_proba(raw)[:, 1], expected))
            if not raw_ok:
                problems.append("the single-thread predict scores a probe differently")
        except Exception as e:
            problems.append(f"the single-thread predict fails ({type(e).__name__}: {e})")
    if problems:
        log.warning(
            "model %s with scikit-learn %s: %s; scoring with scikit-learn's predict_proba",
            art.version,
            sklearn.__version__,
            "; ".join(problems),
        )
    if flat is not None:
        return flat, False, "compiled tree walk (equal to predict_proba on a probe)"
    if raw_ok:
        reason = "categorical splits" if categorical else "fallback"
        return None, True, f"scikit-learn single-thread predict ({reason})"
    return None, False, "scikit-learn predict_proba (fallback)"


#: The private scikit-learn names the compiled walk reads. Kept here, in one place, so a test
#: can rename one to play a scikit-learn release that renamed it.
_PREDICTORS = "_predictors"
_BASELINE = "_baseline_prediction"
_NODE_FIELDS = {
    "value": "value",
    "feature": "feature_idx",
    "threshold": "num_threshold",
    "missing_left": "missing_go_to_left",
    "left": "left",
    "right": "right",
    "leaf": "is_leaf",
    "categorical": "is_categorical",
}


class _FlatTrees:
    """All trees of a binary HistGradientBoostingClassifier as flat arrays, walked compiled.

    See ``core/treewalk.py``: the same comparisons and the same summation order as
    scikit-learn, so the scores equal ``predict_proba``'s, at any batch size.
    """

    def __init__(self, arrays: dict[str, np.ndarray], baseline: float) -> None:
        self.a = arrays
        self.baseline = baseline

    @classmethod
    def build(cls, est: Any) -> _FlatTrees | None:
        """The flat form, or None for categorical splits; raises if scikit-learn changed."""
        field = _NODE_FIELDS
        nodes = [predictors[0].nodes for predictors in getattr(est, _PREDICTORS)]
        if not nodes or any(n[field["categorical"]].any() for n in nodes):
            return None
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]])
        allnodes = np.concatenate(nodes)
        shift = np.repeat(offsets, [len(n) for n in nodes])
        arrays = {
            "root": offsets.astype(np.intp),
            "value": allnodes[field["value"]].astype(np.float64),
            "feature": allnodes[field["feature"]].astype(np.intp),
            "threshold": allnodes[field["threshold"]].astype(np.float64),
            "missing_left": allnodes[field["missing_left"]].astype(np.bool_),
            "left": (allnodes[field["left"]] + shift).astype(np.intp),
            "right": (allnodes[field["right"]] + shift).astype(np.intp),
            "leaf": allnodes[field["leaf"]].astype(np.bool_),
        }
        n_nodes = len(allnodes)
        for name in ("left", "right"):  # a walk must never leave the arrays
            inner = arrays[name][~arrays["leaf"]]
            if len(inner) and (inner.min() < 0 or inner.max() >= n_nodes):
                raise ValueError(f"node field {field[name]!r} points outside the trees")
        baseline = float(np.asarray(getattr(est, _BASELINE)).ravel()[0])
        return cls(arrays, baseline)

    def predict_proba1(self, X: np.ndarray) -> np.ndarray:
        from payscore.core.treewalk import raw_scores  # numba: imported on first use

        a = self.a
        raw = raw_scores(
            np.ascontiguousarray(X, dtype=np.float64),
            a["root"],
            a["value"],
            a["feature"],
            a["threshold"],
            a["missing_left"],
            a["left"],
            a["right"],
            a["leaf"],
            self.baseline,
        )
        return np.asarray(expit(raw), dtype=np.float64)


def _is_hist_gb_binary(estimator: Any) -> bool:
    """Public attributes only: a private one gone is the guard's business (and warning)."""
    return (
        isinstance(estimator, HistGradientBoostingClassifier)
        and getattr(estimator, "n_trees_per_iteration_", None) == 1
    )


def content_version(estimator_bytes: bytes, feature_names: Sequence[str], metadata: dict) -> str:
    """First 12 hex digits of SHA-256 over the pickled estimator, features and metadata."""
    digest = hashlib.sha256(estimator_bytes)
    digest.update(json.dumps(list(feature_names)).encode())
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def save_artifact(artifact: ModelArtifact, path: str | Path, key: Secret | None = None) -> str:
    """Write the artifact (``core/artifact.py``: model, sidecar, digest file and, with a
    ``key``, its HMAC signature); returns the artifact digest to pin as ``model_sha256``."""
    buffer = io.BytesIO()
    joblib.dump(artifact.estimator, buffer, compress=3)
    model_bytes = buffer.getvalue()
    sidecar = files.sidecar_bytes(
        model_bytes, artifact.version, list(artifact.feature_names), artifact.metadata
    )
    return files.write(path, model_bytes, sidecar, key)


def load_artifact(path: str | Path, trust: Trust | None = None) -> ModelArtifact:
    """Check (digest file, sidecar, pinned digest and signature as ``trust`` sets them,
    scikit-learn version), then unpickle. Nothing is unpickled before every check passed."""
    checked = files.verified(path, trust, sklearn.__version__)
    try:
        estimator = joblib.load(io.BytesIO(checked.model_bytes))
    except Exception as e:  # a verified file that still cannot be read
        raise ModelError(f"cannot unpickle the estimator in {path}: {type(e).__name__}: {e}") from e
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ModelError(f"{path} does not hold a fitted classifier; retrain with `payscore train`")
    doc = checked.sidecar
    return ModelArtifact(estimator, doc["feature_names"], doc["metadata"], doc["version"])
