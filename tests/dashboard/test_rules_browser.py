"""End to end: the Rules tab of `payscore dashboard` on MariaDB, driven by headless Chromium.

The database holds the what-if test's stored world (its decisions, half its labels, its model),
so the what-if figures the page shows are checked against that test's independent count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from payscore.config import Settings
from payscore.dashboard.browserpage import CHROMIUM, CHROMIUM_ARGS
from payscore.store.engine import make_engine
from payscore.store.schema import policy_audit, policy_list_entries, policy_rules
from tests.cli.test_rules_whatif import CANDIDATE, STOCK_REVIEW, independent, store_world
from tests.dashboard.test_app import ANALYST_PASSWORD, analyst_entry  # noqa: F401 - a fixture
from tests.dashboard.test_browser import _serving
from tests.dashboard.test_rules_tab import RULE_TOML

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DAYS = 5
MALFORMED = (
    'code = "ODD"\nkind = "compare"\naction = "REVIEW"\n'
    '[params]\nfeature = "amount"\nop = "=>"\nvalue = 5\n'
)


@pytest.fixture
def rules_dashboard(
    db_url: str,
    payscore_env: Callable[..., dict[str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, Settings]]:
    """The stored world in a fresh MariaDB database; the page with rule editing on."""
    settings = store_world(db_url, tmp_path)
    with _serving(
        db_url,
        payscore_env,
        tmp_path,
        model_path=settings.model_path,
        review_threshold=1.0,
        decline_threshold=1.0,
        amount_review_limit=STOCK_REVIEW,
        dashboard_labelling=True,
        dashboard_users=request.getfixturevalue("analyst_entry"),
        dashboard_policy_editing=True,
    ) as url:
        yield url, settings


def _stored(settings: Settings) -> dict[str, Any]:
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return {
                "rules": [r for (r,) in conn.execute(select(policy_rules.c.code))],
                "audit": [
                    tuple(a)
                    for a in conn.execute(
                        select(
                            policy_audit.c.actor, policy_audit.c.change, policy_audit.c.subject
                        ).order_by(policy_audit.c.id)
                    )
                ],
                "entries": conn.execute(
                    select(func.count()).select_from(policy_list_entries)
                ).scalar(),
                "values": sorted(v for (v,) in conn.execute(select(policy_list_entries.c.value))),
            }
    finally:
        engine.dispose()


def test_an_analyst_changes_rules_and_lists_in_chromium(
    rules_dashboard: tuple[str, Settings], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url, settings = rules_dashboard
    empty = {"rules": [], "audit": [], "entries": 0, "values": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_role("tab", name="Rules")).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Rules").click()
            rules = page.get_by_role("tabpanel", name="Rules")

            # Not signed in: everything readable, no way to change it.
            expect(rules.get_by_text("Sign in (sidebar) to change rules")).to_be_visible(
                timeout=30_000
            )
            expect(rules.get_by_text(re.compile(r"^Policy version 0\."))).to_be_visible()
            for button in ("Try on history", "Add to list", "Remove from list"):
                assert page.get_by_role("button", name=button).count() == 0, button

            sidebar = page.locator("[data-testid='stSidebar']")
            sidebar.get_by_role("textbox", name="Analyst").fill("alice")
            sidebar.get_by_role("textbox", name="Password").fill(ANALYST_PASSWORD)
            sidebar.get_by_role("button", name="Sign in").click()
            expect(sidebar.get_by_text("Signed in as alice")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Rules").click()
            try_it = rules.get_by_role("button", name="Try on history")
            expect(try_it).to_be_visible(timeout=30_000)

            # A malformed rule: one clear line, nothing stored.
            days = rules.get_by_label(re.compile("What-if over the last N days"))
            days.fill(str(DAYS))
            days.press("Enter")
            rules.get_by_label("Rule", exact=True).fill(MALFORMED)
            rules.get_by_label("Why (for the audit trail)").fill("small payments")
            try_it.click()
            expect(rules.get_by_text("rule ODD: op: operator must be one of")).to_be_visible(
                timeout=60_000
            )
            assert _stored(settings) == empty

            # A good rule: the what-if report first, stored only on confirming.
            rules.get_by_label("Rule", exact=True).fill(RULE_TOML)
            try_it.click()
            expect(rules.get_by_text("What-if: add rule SMALL_AMOUNT")).to_be_visible(
                timeout=180_000
            )
            report = rules.locator("[data-testid='stTable'] table")
            total = report.locator("tr").filter(has_text="total")
            expect(total).to_be_visible(timeout=30_000)  # drawn just after the heading
            cells = total.locator("td, th")
            shown = [c.strip() for c in cells.all_inner_texts()]
            expected = independent({"settings": settings}, rule=lambda a: a > CANDIDATE)
            totals = [sum(day[i] for day in expected.values()) for i in range(5)]
            assert shown == [
                "total",
                f"{totals[0]:,}",
                f"{totals[1]:,}",
                f"{totals[2]:,}",
                f"{totals[3]:+,}",
                f"{totals[4]:,}",
            ], shown
            assert report.locator("tbody tr").count() == DAYS + 1
            assert _stored(settings) == empty
            page.screenshot(path=str(tmp_path / "whatif.png"), full_page=True)
            rules.get_by_role("button", name="Confirm: add SMALL_AMOUNT").click()
            expect(rules.get_by_text(re.compile("Rule SMALL_AMOUNT added"))).to_be_visible(
                timeout=30_000
            )
            stored = _stored(settings)
            assert stored["rules"] == ["SMALL_AMOUNT"]
            assert stored["audit"] == [("alice", "rule.add", "SMALL_AMOUNT")]

            # A list entry added, then removed, in alice's name.
            form = rules.locator("[data-testid='stForm']").filter(
                has_text="Add or remove list values"
            )
            form.get_by_label("List name").fill("blocked")
            form.locator("[data-testid='stSelectbox']").click()
            page.get_by_role("option", name="customer_id").click()
            form.get_by_label(re.compile("^Values")).fill("C1\nC2")
            form.get_by_label("Why").fill("chargebacks")
            form.get_by_role("button", name="Add to list").click()
            expect(rules.get_by_text(re.compile("Added 2 to list blocked by alice"))).to_be_visible(
                timeout=30_000
            )
            assert _stored(settings)["values"] == ["C1", "C2"]
            form.get_by_label(re.compile("^Values")).fill("C1")
            form.get_by_label("Why").fill("paid back")
            form.get_by_role("button", name="Remove from list").click()
            expect(
                rules.get_by_text(re.compile("Removed 1 from list blocked by alice"))
            ).to_be_visible(timeout=30_000)
            stored = _stored(settings)
            assert stored["values"] == ["C2"]
            assert stored["audit"][1:] == [
                ("alice", "list.add", "blocked:C1"),
                ("alice", "list.add", "blocked:C2"),
                ("alice", "list.remove", "blocked:C1"),
            ]
            expect(rules.get_by_text(re.compile(r"^Policy version 3\."))).to_be_visible(
                timeout=30_000
            )
            page.screenshot(path=str(tmp_path / "rules.png"), full_page=True)
        finally:
            browser.close()
