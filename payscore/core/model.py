"""The model artifact: a scikit-learn estimator plus the metadata needed to trust and use it.

On disk it is one joblib file and a ``<file>.sha256`` digest beside it. Loading checks the
digest before anything is unpickled (a pickle can run code), then refuses an artifact made by
an incompatible scikit-learn release, and only then unpickles the estimator.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
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

from payscore.errors import ModelError

FORMAT = "payscore-model/1"
_MAX_ARTIFACT_BYTES = 2 * 1024**3
_HINT = "run `payscore train` to create one"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a pickled estimator."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


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
        if X.shape[0] <= _SINGLE_THREAD_ROWS and _is_hist_gb_binary(self.estimator):
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
            if _is_hist_gb_binary(self.estimator):
                self._flat = _FlatTrees.build(self.estimator)
            self._flat_built = True
        return self._flat


_SINGLE_THREAD_ROWS = 4096


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
        nodes = [predictors[0].nodes for predictors in est._predictors]
        if not nodes or any(n["is_categorical"].any() for n in nodes):
            return None
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]])
        allnodes = np.concatenate(nodes)
        shift = np.repeat(offsets, [len(n) for n in nodes])
        arrays = {
            "root": offsets.astype(np.intp),
            "value": allnodes["value"].astype(np.float64),
            "feature": allnodes["feature_idx"].astype(np.intp),
            "threshold": allnodes["num_threshold"].astype(np.float64),
            "missing_left": allnodes["missing_go_to_left"].astype(np.bool_),
            "left": (allnodes["left"] + shift).astype(np.intp),
            "right": (allnodes["right"] + shift).astype(np.intp),
            "leaf": allnodes["is_leaf"].astype(np.bool_),
        }
        baseline = float(np.asarray(est._baseline_prediction).ravel()[0])
        return cls(arrays, baseline)

    def predict_proba1(self, X: np.ndarray) -> np.ndarray:
        from payscore.core.treewalk import raw_scores  # numba: imported on first use

        a = self.a
        raw = raw_scores(
            np.ascontiguousarray(X, dtype=np.float64),
            a["root"], a["value"], a["feature"], a["threshold"], a["missing_left"],
            a["left"], a["right"], a["leaf"], self.baseline,
        )
        return np.asarray(expit(raw), dtype=np.float64)


def _is_hist_gb_binary(estimator: Any) -> bool:
    return (
        isinstance(estimator, HistGradientBoostingClassifier)
        and getattr(estimator, "n_trees_per_iteration_", None) == 1
        and hasattr(estimator, "_raw_predict")
        and hasattr(estimator, "_loss")
    )


def content_version(estimator_bytes: bytes, feature_names: Sequence[str], metadata: dict) -> str:
    """First 12 hex digits of SHA-256 over the pickled estimator, features and metadata."""
    digest = hashlib.sha256(estimator_bytes)
    digest.update(json.dumps(list(feature_names)).encode())
    digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def digest_path(path: str | Path) -> Path:
    return Path(f"{path}.sha256")


def save_artifact(artifact: ModelArtifact, path: str | Path) -> None:
    """Write the artifact (one joblib file) and its SHA-256 digest beside it, atomically."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": artifact.version,
        "feature_names": list(artifact.feature_names),
        "metadata": artifact.metadata,
        # Pickled separately so load_artifact can check versions before unpickling it.
        "estimator_pickle": pickle.dumps(artifact.estimator, protocol=5),
    }
    buffer = io.BytesIO()
    joblib.dump(payload, buffer, compress=3)
    data = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        digest = hashlib.sha256(data).hexdigest()
        tmp_digest = path.with_name(path.name + ".sha256.tmp")
        tmp_digest.write_text(f"{digest}  {path.name}\n", encoding="utf-8")
        os.replace(tmp_digest, digest_path(path))
    except OSError as e:
        raise ModelError(f"cannot write model artifact {path}: {e.strerror or e}") from e


def load_artifact(path: str | Path) -> ModelArtifact:
    """Read, verify (digest, then scikit-learn version) and unpickle an artifact."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model artifact at {path}; {_HINT}")
    dpath = digest_path(path)
    if not dpath.is_file():
        raise ModelError(f"model artifact {path} has no digest file {dpath.name}; refusing it")
    try:
        if path.stat().st_size > _MAX_ARTIFACT_BYTES:
            raise ModelError(f"model artifact {path} is larger than 2 GiB; refusing it")
        data = path.read_bytes()
        expected = dpath.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read model artifact {path}: {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if not expected or expected[0].lower() != actual:
        raise ModelError(
            f"model artifact {path} does not match its SHA-256 digest (tampered or "
            f"half-written); refusing it; {_HINT}"
        )
    try:
        payload = joblib.load(io.BytesIO(data))
    except Exception as e:  # a verified file that still cannot be read
        raise ModelError(f"cannot read model artifact {path}: {type(e).__name__}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a payscore model artifact ({FORMAT})")
    metadata = payload["metadata"]
    made_with = str(metadata.get("library_versions", {}).get("scikit-learn", "unknown"))
    if _major_minor(made_with) != _major_minor(sklearn.__version__):
        raise ModelError(
            f"model artifact {path} was made with scikit-learn {made_with}, but "
            f"{sklearn.__version__} is installed; retrain it with `payscore train`"
        )
    try:
        estimator = pickle.loads(payload["estimator_pickle"])  # noqa: S301 - digest verified
    except Exception as e:
        raise ModelError(f"cannot unpickle the estimator in {path}: {e}") from e
    return ModelArtifact(estimator, payload["feature_names"], metadata, payload["version"])
