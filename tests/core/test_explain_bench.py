"""Benchmark: explaining payments against scoring them, same model, same rows, same run.

Run (docs/benchmarks.md): ``nice -n 10 python -m tests.core.test_explain_bench MODEL`` with a
model made by ``payscore train``. Features of 50,000 payments of the simulated world (after
100,000 of warm-up) are computed once; then the best of 7 runs of ``predict_scores``,
``explain.contributions``, ``explain.scored_contributions`` (scores and contributions from one
walk: what the consumer runs), ``explain.explain`` from those contributions (top 3 with
texts) and ``explain.explain`` alone on batches of 1 and 500.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from payscore.core import simulator, training
from payscore.core.explain import contributions, explain, scored_contributions


def best(f: Callable[[], Any], reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(artifact: Any, names: tuple[str, ...], X: np.ndarray) -> list[dict[str, float]]:
    artifact.warm_up()
    contributions(artifact, names, X[:2])  # compiled (or loaded from the cache) once
    out = []
    for n in (1, 500):
        rows = X[:n]
        _, C = scored_contributions(artifact, names, rows)
        out.append(
            {
                "batch": n,
                "score_ms": best(lambda r=rows: artifact.predict_scores(names, r)) * 1e3,
                "contributions_ms": best(lambda r=rows: contributions(artifact, names, r)) * 1e3,
                "explain_ms": best(lambda r=rows: explain(artifact, names, r)) * 1e3,
                "scored_ms": best(lambda r=rows: scored_contributions(artifact, names, r)) * 1e3,
                "texts_ms": best(lambda r=rows, c=C: explain(artifact, names, r, 3, c)) * 1e3,
            }
        )
    return out


def main() -> None:
    from payscore.core.model import load_artifact

    artifact = load_artifact(sys.argv[1])
    df = simulator.load_world()
    engine, X = training.compute_features(training.History.from_world(df.iloc[-150_000:]))
    for row in measure(artifact, engine.feature_names, X[-50_000:]):
        print(
            f"batch {row['batch']}: predict_scores {row['score_ms']:.3f} ms, contributions "
            f"{row['contributions_ms']:.3f} ms ({row['contributions_ms'] / row['score_ms']:.1f}x), "
            f"explain with texts {row['explain_ms']:.3f} ms "
            f"({row['explain_ms'] / row['score_ms']:.1f}x); scores and contributions in one walk "
            f"{row['scored_ms']:.3f} ms ({row['scored_ms'] / row['score_ms']:.2f}x), reasons "
            f"from them {row['texts_ms']:.3f} ms ({row['texts_ms'] / row['score_ms']:.2f}x)"
        )


def test_the_benchmark_measures_both_batch_sizes() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from payscore.core.model import ModelArtifact

    df = simulator.generate_world(n_customers=60, n_terminals=120, n_days=30)
    engine, X = training.compute_features(training.History.from_world(df))
    est = HistGradientBoostingClassifier(max_iter=10).fit(X, df["TX_FRAUD"].to_numpy())
    rows = measure(ModelArtifact(est, engine.feature_names, {}), engine.feature_names, X)
    assert [r["batch"] for r in rows] == [1, 500]
    assert all(r["explain_ms"] > 0 and r["score_ms"] > 0 and r["scored_ms"] > 0 for r in rows)
    assert all(r["texts_ms"] > 0 for r in rows)


if __name__ == "__main__":
    main()
