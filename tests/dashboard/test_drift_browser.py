"""The Model tab's drift section in a real headless Chromium: a model with a reference and
hourly counts written by the writer's own code; the score PSI, the largest feature PSI and
the payments of the range appear as the core computes them, for the range chosen; a model
trained before references says so."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from payscore.config import Settings
from payscore.core import drift
from payscore.dashboard.figures import utc_now
from payscore.store.drift import increments
from payscore.store.engine import make_engine
from payscore.store.schema import feature_histograms, model_versions
from tests.dashboard.test_browser import _metrics
from tests.dashboard.test_model_browser import _model_tab

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FEATURES = ("amount", "customer_nb_tx_1day", "terminal_risk_7day")
VERSION = "drift-model-1"


def _data(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    X = np.column_stack(
        [
            rng.normal(50 + shift * 20, 20, n),  # amount: moved by ``shift`` standard deviations
            rng.poisson(3, n).astype(float),
            np.where(rng.random(n) < 0.9, 0.0, rng.random(n)),
        ]
    )
    return X, rng.beta(0.5, 30 - 10 * shift, n)


def _model(engine: Engine, version: str, metadata: dict[str, Any], at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(model_versions),
            {
                "version": version,
                "trained_at": at,
                "activated_at": at,
                "metadata_json": json.dumps(metadata),
            },
        )


def _counts(
    engine: Engine, reference: drift.Reference, X: np.ndarray, s: np.ndarray, hour: datetime
) -> dict[str, list[int]]:
    """Bin ``X``/``s`` as the pipeline does and store them as the writer does."""
    codes = drift.Codes(VERSION, *_binned(reference, X, s))
    rows = [{"scored_at": hour}] * len(s)
    values = increments(codes, rows, np.arange(len(s)))
    with engine.begin() as conn:
        conn.execute(insert(feature_histograms), values)
    return {v["feature"]: [v[f"bin_{i:02d}"] for i in range(drift.MAX_BINS)] for v in values}


def _binned(reference: drift.Reference, X: np.ndarray, s: np.ndarray) -> tuple[Any, Any]:
    binner = drift.Binner(VERSION, reference, FEATURES)
    return binner.names, binner.codes(X, s)


def _expected(reference: drift.Reference, counts: dict[str, list[int]]) -> dict[str, float]:
    return {
        s.name: drift.psi(s.proportions, counts[s.name][: len(s.proportions)])
        for s in reference.series
    }


def _pick_range(page: Any, choice: str) -> None:
    page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name=choice).click()


def test_drift_section_in_chromium(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    rng = np.random.default_rng(7)
    X, s = _data(rng, 20_000, 0.0)
    meta = {
        drift.REFERENCE_KEY: drift.build_reference(
            FEATURES, list(X.T), s, feature_rows=20_000, score_period="validation"
        )
    }
    reference = drift.Reference.from_metadata(meta)
    assert reference is not None
    now = utc_now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    engine = make_engine(Settings(database_url=db_url))
    try:
        _model(engine, VERSION, meta, now - timedelta(days=5))
        recent = _counts(engine, reference, *_data(rng, 3_000, 1.0), hour)
        old = _counts(engine, reference, *_data(rng, 2_000, 0.0), hour - timedelta(days=3))
    finally:
        engine.dispose()
    last_hour = _expected(reference, recent)
    both = {k: [a + b for a, b in zip(recent[k], old[k], strict=True)] for k in recent}
    all_time = _expected(reference, both)
    worst = max(FEATURES, key=lambda f: last_hour[f])
    assert worst == "amount" and drift.band(last_hour["amount"]) == "shifted"

    with _model_tab(db_url, payscore_env, tmp_path) as (page, panel):
        expect(panel.get_by_text("Drift", exact=True)).to_be_visible(timeout=60_000)
        expect(panel.get_by_text(re.compile("3,000 payments decided"))).to_be_visible(
            timeout=30_000
        )
        shown, notes = _metrics(page), _metrics(page, "stMetricDelta")
        assert shown["Score PSI"] == f"{last_hour['score']:.3f}", shown
        assert notes["Score PSI"] == drift.band(last_hour["score"]), notes
        assert shown["Largest feature PSI"] == f"{last_hour['amount']:.3f}", shown
        assert notes["Largest feature PSI"] == "amount", notes
        expect(panel.get_by_text(re.compile("PSI below 0.1: stable"))).to_be_visible()
        expect(panel.get_by_text("3 row(s) shown")).to_be_visible()  # one per feature
        chart = panel.locator("[data-testid='stVegaLiteChart']")
        expect(chart).to_have_count(1, timeout=30_000)
        page.wait_for_timeout(1500)  # let the chart finish drawing
        page.screenshot(path=str(tmp_path / "drift.png"), full_page=True)

        # All time adds the older hour's 2,000 undrifted payments: the PSI falls.
        _pick_range(page, "All time")
        expect(panel.get_by_text(re.compile("5,000 payments decided"))).to_be_visible(
            timeout=60_000
        )
        page.wait_for_timeout(1000)
        shown = _metrics(page)
        assert shown["Score PSI"] == f"{all_time['score']:.3f}", shown
        assert shown["Largest feature PSI"] == f"{max(all_time[f] for f in FEATURES):.3f}"
        assert all_time["amount"] < last_hour["amount"]


def test_a_model_without_reference_says_retrain(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    engine = make_engine(Settings(database_url=db_url))
    try:
        _model(engine, "old-model", {"metrics": {"auc_roc": 0.9}}, utc_now())
    finally:
        engine.dispose()
    with _model_tab(db_url, payscore_env, tmp_path) as (_, panel):
        expect(
            panel.get_by_text(re.compile("old-model was trained before payscore recorded"))
        ).to_be_visible(timeout=60_000)
