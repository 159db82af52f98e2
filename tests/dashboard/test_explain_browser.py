"""Stored explanations in a real headless Chromium: the review queue lists the oldest waiting
payment's reasons one a line, and the customer page's history draws the explanation column.
The texts are what the consumer stores (``explain.explanation_text`` of reason texts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from payscore.config import Settings
from payscore.core.explain import Reason, explanation_text, reason_text
from payscore.dashboard.browserpage import CHROMIUM, CHROMIUM_ARGS
from payscore.dashboard.figures import utc_now
from payscore.dashboard.seed import label_for, seed_database, synthetic_rows
from payscore.store.engine import make_engine
from payscore.store.schema import scored_transactions as st
from tests.dashboard.test_browser import (
    RECORD_CANVAS_TEXT,
    ROWS,
    SEED,
    SPAN,
    _serving,
    _vega_warnings,
    _watch_console,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _reasons(row: dict[str, Any]) -> str:
    """A stored explanation for a seeded row, made as the consumer makes it."""
    context = {"customer_avg_amount_30day": row["amount"] / 4.0, "customer_nb_tx_30day": 12.0}
    reasons = [
        Reason(f, v, c, reason_text(f, v, context))
        for f, v, c in (
            ("amount", row["amount"], 2.5),
            ("customer_nb_tx_1day", 9.0, 1.25),
            ("terminal_nb_fraud_30day", 3.0, 0.5),
        )
    ]
    return explanation_text(reasons)


def test_explanations_in_the_review_queue_and_on_the_customer_page(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    now = utc_now()
    engine = make_engine(Settings(database_url=db_url))
    seed_database(engine, ROWS, now=now, span_seconds=SPAN, seed=SEED)
    rows = list(synthetic_rows(ROWS, now=now, span_seconds=SPAN, seed=SEED))
    labelled = {lab["transaction_id"] for lab in map(label_for, rows) if lab}
    waiting = [r for r in rows if r["status"] == "REVIEW" and r["transaction_id"] not in labelled]
    oldest = min(waiting, key=lambda r: r["event_time"])
    customer = oldest["customer_id"]
    explained = [r for r in rows if r["customer_id"] == customer] + [oldest]
    with engine.begin() as conn:
        for r in explained:
            conn.execute(
                update(st)
                .where(st.c.transaction_id == r["transaction_id"])
                .values(explanation=_reasons(r))
            )
    engine.dispose()
    texts = _reasons(oldest).split("; ")
    assert len(texts) == 3 and texts[0].startswith(f"amount {oldest['amount']:.2f} (4.0x")

    with _serving(db_url, payscore_env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1900, "height": 1100})
            context.add_init_script(RECORD_CANVAS_TEXT)
            page = context.new_page()
            console = _watch_console(page)
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)

            page.get_by_role("tab", name="Review queue").click()
            review = page.get_by_role("tabpanel", name="Review queue")
            expect(review.get_by_text(f"Why {oldest['transaction_id']} scored")).to_be_visible(
                timeout=30_000
            )
            for text in texts:  # one list item a reason, in the stored order
                expect(review.get_by_role("listitem").filter(has_text=text)).to_have_count(1)
            items = [li.inner_text() for li in review.get_by_role("listitem").all()]
            assert items[:3] == texts, items

            page.get_by_role("tab", name="Customer").click()
            panel = page.get_by_role("tabpanel", name="Customer")
            box = panel.get_by_label("Customer id")
            box.fill(customer)
            box.press("Enter")
            expect(panel.get_by_text("Std of amount")).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)  # let the canvas-drawn table draw
            drawn = list(page.evaluate("window.__drawn"))
            assert "explanation" in drawn
            assert any(s.startswith(texts[0][:20]) for s in drawn), [
                s for s in drawn if "amount" in s
            ][:10]
            page.screenshot(path=str(tmp_path / "customer.png"), full_page=True)
            assert [m for m in console if m.startswith("error")] + _vega_warnings(console) == []
        finally:
            browser.close()
