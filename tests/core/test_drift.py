"""Drift references and PSI (core/drift.py): pure, no services."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from payscore.core import drift, training
from payscore.core.simulator import generate_world, write_csv


def test_psi_against_a_hand_computed_case() -> None:
    # Reference 50/50, live 30/70: (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5).
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    assert drift.psi([0.5, 0.5], [30, 70]) == pytest.approx(expected)
    assert drift.psi([0.5, 0.5], [30, 70]) == pytest.approx(0.169459, abs=1e-6)
    # Same shares: 0, empty bins included (both floored alike).
    assert drift.psi([0.25, 0.75, 0.0], [25, 75, 0]) == pytest.approx(0.0)
    # A bin empty in the reference but not live: its share counts as the floor, 1e-4.
    floored = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    assert drift.psi([0.5, 0.5, 0.0], [40, 40, 20]) == pytest.approx(floored)
    assert math.isnan(drift.psi([0.5, 0.5], [0, 0]))
    assert [drift.band(v) for v in (0.05, 0.1, 0.2, 0.25, 1.0)] == [
        "stable",
        "watch",
        "watch",
        "shifted",
        "shifted",
    ]


def test_bins_are_right_closed_and_nan_is_missing() -> None:
    edges = np.array([0.0, 1.0, 2.5])
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.5, 3.0, np.nan])
    assert drift.bin_codes(values, edges).tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert drift.bin_labels([0.0, 1.0, 2.5]) == [
        "<= 0",
        "(0, 1]",
        "(1, 2.5]",
        "> 2.5",
        "missing",
    ]


def test_continuous_feature_gets_deciles() -> None:
    x = np.random.default_rng(1).normal(size=20_000)
    edges = drift.feature_edges(x)
    assert len(edges) == 9
    shares = drift.shares(x, edges)
    assert len(shares) == 11 and shares[-1] == 0.0  # no missing value
    assert all(abs(s - 0.1) < 0.002 for s in shares[:-1])


def test_a_pile_of_zeros_gets_its_own_bin_and_the_rest_is_still_cut() -> None:
    rng = np.random.default_rng(2)
    x = np.where(rng.random(50_000) < 0.95, 0.0, rng.uniform(1, 100, 50_000))
    edges = drift.feature_edges(x)
    shares = drift.shares(x, edges)
    assert edges[0] == 0.0 and shares[0] == pytest.approx((x == 0).mean(), abs=1e-6)
    # Plain deciles would be all 0 and leave one bin for the 5 %; here it has nine.
    assert len(edges) == 9
    assert all(0.003 < s < 0.008 for s in shares[1:-1])


def test_a_flag_and_a_few_values_get_a_bin_each() -> None:
    flag = np.array([0.0] * 70 + [1.0] * 30)
    assert drift.feature_edges(flag).tolist() == [0.0]
    assert drift.shares(flag, drift.feature_edges(flag)) == [0.7, 0.3, 0.0]
    counts = np.array([float(i % 4) for i in range(1000)])
    assert drift.feature_edges(counts).tolist() == [0.0, 1.0, 2.0]
    # A pile in the middle of a continuous feature is isolated from below and above.
    rng = np.random.default_rng(3)
    mixed = np.concatenate([rng.uniform(0, 10, 6000), np.full(4000, 5.0)])
    edges = drift.feature_edges(mixed)
    pile = drift.bin_codes(np.array([5.0]), edges)[0]
    assert drift.shares(mixed, edges)[pile] == pytest.approx(0.4, abs=1e-3)


def test_missing_values_have_a_share() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0] * 50)
    ref = drift.build_reference(
        ["f"], [x], np.linspace(0, 1, 100), feature_rows=200, score_period="validation"
    )
    assert ref["features"]["f"]["proportions"][-1] == 0.25


def test_reference_round_trips_through_json_and_bins_live_rows() -> None:
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(size=5000), rng.poisson(2, 5000).astype(float)])
    scores = rng.beta(0.5, 20, 5000)
    ref = drift.build_reference(
        ["amount", "count"], [X[:, 0], X[:, 1]], scores, feature_rows=5000, score_period="train"
    )
    meta = json.loads(json.dumps({drift.REFERENCE_KEY: ref}))
    reference = drift.Reference.from_metadata(meta)
    assert reference is not None
    assert [s.name for s in reference.series] == ["score", "amount", "count"]
    assert len(reference.get("score").edges) == len(drift.SCORE_QUANTILES)  # type: ignore[union-attr]
    assert drift.Reference.from_metadata({"metrics": {}}) is None  # an older model

    # The engine's columns in another order, with one the model does not use.
    engine_names = ("other", "count", "amount")
    engine_X = np.column_stack([np.zeros(5000), X[:, 1], X[:, 0]])
    binner = drift.Binner("m1", reference, engine_names)
    assert binner.names == ("score", "amount", "count")
    counts = drift.counts_of(binner.codes(engine_X, scores))
    for series, row in zip(reference.series, counts, strict=True):
        n = len(series.proportions)
        assert row[n:].sum() == 0
        assert row[:n].tolist() == [round(p * 5000) for p in series.proportions]
        assert drift.psi(series.proportions, row[:n]) == pytest.approx(0.0, abs=1e-9)
    shifted = engine_X.copy()
    shifted[:, 2] += 1.0  # amounts one standard deviation up
    moved = drift.counts_of(binner.codes(shifted, scores))[1]
    psi = drift.psi(reference.get("amount").proportions, moved[:11])  # type: ignore[union-attr]
    assert drift.band(psi) == "shifted"


def test_batch_bins_follow_the_rows_of_a_batch() -> None:
    ref = drift.build_reference(
        ["a"], [np.arange(100.0)], np.linspace(0, 1, 100), feature_rows=100, score_period="train"
    )
    model = SimpleNamespace(version="m1", metadata={drift.REFERENCE_KEY: ref})
    bins = drift.BatchBins()
    X = np.array([[5.0], [95.0], [50.0]])
    # Scored row by row (after a failure), then asked for in another order, one row lost.
    for i, tx in enumerate(["t1", "t2", "t3"]):
        bins.observe(model, ("a",), [tx], X[i : i + 1], [0.1 * i])
    codes = bins.take(["t3", "t1"])
    assert codes is not None and codes.model_version == "m1"
    whole = drift.Binner("m1", drift.Reference.from_metadata(model.metadata), ("a",))  # type: ignore[arg-type]
    expected = whole.codes(X, np.array([0.0, 0.1, 0.2]))
    assert codes.codes.tolist() == [expected[2].tolist(), expected[0].tolist()]
    assert bins.take(["t1"]) is None  # forgotten after a take
    old = SimpleNamespace(version="m0", metadata={"metrics": {}})
    bins.observe(old, ("a",), ["t1"], X[:1], [0.1])
    assert bins.take(["t1"]) is None  # a model without a reference counts nothing


def test_training_records_the_reference(tmp_path: Path) -> None:
    df = generate_world(n_customers=50, n_terminals=100, n_days=30)
    path = tmp_path / "p.csv"
    write_csv(df[df["TX_AMOUNT"] > 0], path)
    artifact, _ = training.train_on_file(training.read_history(path))
    reference = drift.Reference.from_metadata(artifact.metadata)
    assert reference is not None
    assert {s.name for s in reference.series} == {"score", *artifact.feature_names}
    period = artifact.metadata["training_period"]
    assert reference.feature_payments == period["train_payments"]
    assert reference.score_period == "validation"
    assert reference.score_payments == period["validation_payments"]
    for s in reference.series:
        assert sum(s.proportions) == pytest.approx(1.0, abs=1e-5)
        assert list(s.edges) == sorted(set(s.edges)) and len(s.proportions) <= drift.MAX_BINS
