"""The Model tab in a real headless Chromium: a seeded champion and challenger with labels;
the comparison's metrics and the review-budget curve appear with the seed's own figures, a
new review threshold shows its load and catch, and the console stays clean."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from payscore.config import Settings
from payscore.core.budget import at_threshold
from payscore.dashboard.browserpage import CHROMIUM, CHROMIUM_ARGS
from payscore.dashboard.figures import utc_now
from payscore.dashboard.views import fmt_rate
from payscore.store.engine import make_engine
from payscore.store.schema import models
from tests.dashboard.model_seed import CHALLENGER, CHAMPION, THRESHOLDS, seed_models
from tests.dashboard.test_browser import _metrics, _serving, _vega_warnings, _watch_console

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _errors(console: list[str]) -> list[str]:
    return [m for m in console if m.startswith("error")] + _vega_warnings(console)


@contextmanager
def _model_tab(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[Any, Any]]:
    """`payscore dashboard` on ``db_url`` in Chromium with the Model tab open: (page, the
    tab's panel); the console must stay clean throughout."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with _serving(db_url, payscore_env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            console = _watch_console(page)
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Model").click()
            yield page, page.get_by_role("tabpanel", name="Model")
            page.wait_for_timeout(1500)  # let the charts finish drawing
            assert _errors(console) == [], console
        finally:
            browser.close()


def test_model_tab_in_chromium(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    engine = make_engine(Settings(database_url=db_url))
    world = seed_models(engine, utc_now())
    engine.dispose()
    labelled = world.labelled
    with _model_tab(db_url, payscore_env, tmp_path) as (page, panel):
        expect(panel.get_by_text("Model registry")).to_be_visible(timeout=60_000)
        frauds = int(labelled["is_fraud"].sum())
        expect(
            panel.get_by_text(
                f"{len(labelled):,} labelled payment(s) of the range that both models "
                f"scored ({frauds:,} fraud)"
            )
        ).to_be_visible(timeout=30_000)
        # The page streams in as the tab runs: read the metrics once the whole tab is drawn
        # (its last line says when it was updated).
        expect(
            panel.get_by_text(re.compile(r"^Updated .* UTC; decision times are UTC"))
        ).to_be_visible(timeout=60_000)

        shown = _metrics(page)
        for role, expected in (("Champion", world.champion), ("Challenger", world.challenger)):
            assert shown[f"{role} AUC ROC"] == f"{expected['auc_roc']:.4f}", shown
            assert shown[f"{role} AP"] == f"{expected['average_precision']:.4f}", shown
            assert shown[f"{role} CP@100"] == f"{expected['card_precision_at_100']:.4f}"
        # The budget curve at the champion's own threshold: its load and catch.
        assert shown["Cards a day to review"] == f"{world.load:,.1f}", shown
        assert shown["Frauds caught"] == fmt_rate(world.caught), shown
        charts = panel.locator("[data-testid='stVegaLiteChart']")
        expect(charts.first).to_be_visible(timeout=30_000)
        assert charts.count() >= 2  # the daily review load and the budget curve
        # Both versions are named in the tables (the grids' hidden cells, filled as they draw).
        expect(panel.get_by_text(CHALLENGER)).not_to_have_count(0, timeout=30_000)
        expect(panel.get_by_text(CHAMPION)).not_to_have_count(0, timeout=30_000)

        # A lower threshold: more cards a day, more frauds caught, as the core computes.
        wanted = 0.45
        box = panel.get_by_label("Review threshold", exact=True).and_(panel.locator("input"))
        box.fill(f"{wanted}")
        box.press("Enter")
        load, caught = at_threshold(
            labelled["event_time"].dt.floor("D").to_numpy(),
            labelled["customer_id"].to_numpy(),
            labelled["is_fraud"].to_numpy(),
            labelled["score"].to_numpy(),
            wanted,
            THRESHOLDS[CHAMPION]["decline"],
        )
        assert load > world.load
        expect(panel.get_by_text(f"{load:,.1f}", exact=True)).to_be_visible(timeout=30_000)
        expect(panel.get_by_text(fmt_rate(caught), exact=True)).to_be_visible(timeout=30_000)


def test_model_tab_without_models_or_labels_says_so(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """An empty registry and no decisions: the tab explains what is missing, no error."""
    from playwright.sync_api import expect

    with _model_tab(db_url, payscore_env, tmp_path) as (_, panel):
        expect(panel.get_by_text(re.compile("No champion in the registry"))).to_be_visible(
            timeout=60_000
        )
        expect(panel.get_by_text(re.compile("No model registered yet"))).to_be_visible()


def test_model_tab_without_a_challenger_shows_the_champion_alone(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    engine = make_engine(Settings(database_url=db_url))
    world = seed_models(engine, utc_now())
    with engine.begin() as conn:
        conn.execute(
            update(models).where(models.c.version == CHALLENGER).values(status="candidate")
        )
    engine.dispose()
    with _model_tab(db_url, payscore_env, tmp_path) as (page, panel):
        expect(panel.get_by_text(re.compile("No challenger set"))).to_be_visible(timeout=60_000)
        expect(
            panel.get_by_text(
                f"{len(world.labelled):,} labelled payment(s) of the range that the champion "
                "decided"
            )
        ).to_be_visible(timeout=30_000)
        shown = _metrics(page)
        assert shown["Champion AUC ROC"] == f"{world.champion['auc_roc']:.4f}", shown
        assert not any(label.startswith("Challenger") for label in shown), shown
