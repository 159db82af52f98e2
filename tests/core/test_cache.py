"""The package never writes into its own installed files: compiled code goes to the cache dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import payscore

PACKAGE = Path(payscore.__file__).resolve().parent

# Trains a tiny model and scores through the compiled tree walk, in a fresh interpreter.
_SCRIPT = """
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from payscore.core.model import ModelArtifact
rng = np.random.default_rng(0)
X = rng.random((300, 2)); y = (X[:, 0] > 0.8).astype(int)
art = ModelArtifact(HistGradientBoostingClassifier(max_iter=5).fit(X, y), ("a", "b"), {})
assert art._flat_trees() is not None, "the compiled walk was not used"
scores = art.predict_scores(("a", "b"), X)
np.testing.assert_array_equal(scores, art.estimator.predict_proba(X)[:, 1])
print("scored", len(scores))
"""


def _files_outside_bytecode(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"}


def _run(cache: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAYSCORE_CACHE_DIR": cache, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_compiled_code_is_cached_in_the_cache_dir_not_the_package(tmp_path):
    before = _files_outside_bytecode(PACKAGE)
    cache = tmp_path / "cache"
    done = _run(str(cache), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scored 300" in done.stdout
    assert _files_outside_bytecode(PACKAGE) - before == set()
    assert list((cache / "numba").rglob("*.nbi")), "numba wrote no index into the cache dir"
    # A second process loads the cached code from there and scores the same.
    again = _run(str(cache), tmp_path)
    assert again.returncode == 0, again.stderr


def test_unwritable_cache_dir_still_scores_and_writes_nothing_into_the_package(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = _files_outside_bytecode(PACKAGE)
    done = _run(str(blocker / "cache"), tmp_path)  # cannot be created, even by root
    assert done.returncode == 0, done.stderr
    assert _files_outside_bytecode(PACKAGE) - before == set()
