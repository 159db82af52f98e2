"""End to end: `payscore dashboard` on a seeded MariaDB, driven by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import Any

import pytest
from sqlalchemy import select

from payscore.config import Settings
from payscore.dashboard.browserbench import serving
from payscore.dashboard.browserpage import CHROMIUM, CHROMIUM_ARGS
from payscore.dashboard.figures import SERIES_COLOURS, STATUS_COLOURS, utc_now
from payscore.dashboard.seed import label_for, seed_database, synthetic_rows
from payscore.store.engine import make_engine
from payscore.store.schema import fraud_labels, label_events
from payscore.store.writer import DecisionWriter

SCREENSHOT_ENV = "PAYSCORE_UPDATE_SCREENSHOT"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
ROWS, SPAN, SEED, DEAD_EVERY = 400, 20 * 60, 3, 25
# A `payscore demo` run: 20,000 decisions within seconds, late in the (UTC) evening.
DEMO_ROWS, DEMO_SPAN = 20_000, 6
# Records every string drawn on a canvas (tables are canvas-drawn; the DOM only has raw values).
RECORD_CANVAS_TEXT = """
window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.__drawn.push(String(text));
    return fillText.call(this, text, ...rest);
};
"""
# The text of every visible metric value that is wider than the box showing it.
CLIPPED_METRICS = """
() => Array.from(document.querySelectorAll(
        "[data-testid='stMetricValue'], .ps-value, .ps-note, .ps-label"))
    .filter(el => el.offsetParent !== null)
    .filter(el => {
        const range = document.createRange();
        range.selectNodeContents(el);
        return range.getBoundingClientRect().width > el.getBoundingClientRect().width + 0.5;
    })
    .map(el => el.innerText)
"""

# Stroke and fill colours of every mark of a chart (Vega and the page's own charts draw SVG),
# upper-cased.
CHART_COLOURS = """
el => Array.from(el.querySelectorAll("svg path, svg line, svg circle, svg rect"))
    .flatMap(p => [p.getAttribute("stroke"), p.getAttribute("fill")])
    .filter(c => c && c.startsWith("#"))
    .map(c => c.toUpperCase())
"""
# The tooltip (an SVG <title>) of what the pointer would hit at x, y in the page.
POINTED_TITLE = """
([x, y]) => {
    const hit = document.elementFromPoint(x, y);
    const title = hit && hit.querySelector(":scope > title");
    return title ? title.textContent : String(hit && hit.outerHTML).slice(0, 200);
}
"""
# Of the elements under `root` that show `text` (as text or an input's value): how many, and
# how many of them are narrower than their content, that is cut off.
TEXT_CLIPPED = """
(root, text) => {
    const holding = [root, ...root.querySelectorAll("*")]
        .filter(el => (el.value || el.textContent || "").includes(text));
    return [holding.length, holding.filter(el => el.scrollWidth > el.clientWidth + 1).length];
}
"""

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path, **settings: Any
) -> Iterator[str]:
    """`payscore dashboard` on ``db_url`` (and ``settings``); yields its URL, and checks that
    it goes away."""
    env = payscore_env(database_url=db_url, **settings)
    with serving(env, _free_port(), tmp_path / "dashboard.log", cwd=tmp_path) as url:
        yield url
    with pytest.raises(OSError):  # the server really went away with the CLI
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


@pytest.fixture
def dashboard(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A seeded database and `payscore dashboard` serving it; yields (page URL, expectations)."""
    now = utc_now()
    engine = make_engine(Settings(database_url=db_url))
    seed_database(engine, ROWS, now=now, span_seconds=SPAN, seed=SEED, dead_letter_every=DEAD_EVERY)
    engine.dispose()
    rows = list(synthetic_rows(ROWS, now=now, span_seconds=SPAN, seed=SEED))
    labels = {lab["transaction_id"]: lab for lab in map(label_for, rows) if lab}
    with _serving(db_url, payscore_env, tmp_path) as url:
        yield url, {"rows": rows, "labels": labels, "db_url": db_url}


# The overview's headline (``inline.headline_html``): the class of the part of a figure that
# stands for each part of Streamlit's metric.
FIGURE_PARTS = {"stMetricValue": "ps-value", "stMetricDelta": "ps-note"}


def _metrics(page: Any, part: str = "stMetricValue") -> dict[str, str]:
    """Label -> value of every visible metric and headline figure (or the line under it,
    part="stMetricDelta")."""
    page.wait_for_selector("[data-testid='stMetricValue'], .ps-value", timeout=60_000)
    out = {}
    for box, label_of, part_of in (
        ("[data-testid='stMetric']", "[data-testid='stMetricLabel']", f"[data-testid='{part}']"),
        (".ps-figure", ".ps-label", f".{FIGURE_PARTS[part]}"),
    ):
        for metric in page.locator(box).all():
            if metric.is_visible():
                label = metric.locator(label_of).inner_text().strip()
                shown = metric.locator(part_of)
                out[label] = shown.inner_text().strip() if shown.count() else ""
    return out


def _watch_console(page: Any) -> list[str]:
    """Every console message of ``page`` from now on, as "type: text"."""
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    return console


def _vega_warnings(console: list[str]) -> list[str]:
    return [m for m in console if "WARN" in m or "Infinite extent" in m or "Scale bind" in m]


@contextmanager
def _select_counter(db_url: str) -> Iterator[Callable[[], int]]:
    """SELECTs the MariaDB server ran since entering (its global ``Com_select``)."""
    from sqlalchemy import text

    engine = make_engine(Settings(database_url=db_url))
    try:
        with engine.connect() as conn:
            stmt = text("SHOW GLOBAL STATUS LIKE 'Com_select'")
            start = int(conn.execute(stmt).one()[1])
            yield lambda: int(conn.execute(stmt).one()[1]) - start
    finally:
        engine.dispose()


def _settled(count: Callable[[], int], at_least: int = 0, timeout: float = 60.0) -> int:
    """The counter once it has reached ``at_least`` and stayed put for a second: a slow
    machine takes longer to run a page's queries, never fewer (no fixed wait to outgrow)."""
    deadline = monotonic() + timeout
    last = count()
    while monotonic() < deadline:
        sleep(1.0)
        now = count()
        if now == last and now >= at_least:
            return now
        last = now
    return last


def _rows_shown(panel: Any) -> int:
    """The row count a tab's first table states (waiting for the tab to be drawn)."""
    from playwright.sync_api import expect

    caption = panel.get_by_text(re.compile(r"row\(s\) shown|No rows")).first
    expect(caption).to_be_visible(timeout=30_000)
    text = caption.inner_text()
    match = re.search(r"([\d,]+) row\(s\) shown|No rows", text)
    assert match, text
    return int(match.group(1).replace(",", "")) if match.group(1) else 0


def test_dashboard_in_chromium(dashboard: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url, seeded = dashboard
    rows = seeded["rows"]
    counts = Counter(r["status"] for r in rows)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            console = _watch_console(page)
            page.goto(url, wait_until="domcontentloaded")

            # Headline figures for the default range (last hour) match the seeded decisions.
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)
            metrics = _metrics(page)
            assert metrics["Payments decided"] == f"{len(rows):,}"
            notes = _metrics(page, "stMetricDelta")
            for status in ("APPROVED", "REVIEW", "DECLINED"):
                n = counts[status]
                assert (metrics[status.title()], notes[status.title()]) == (
                    f"{n:,}",
                    f"{n / len(rows):.2%}",
                )
            fraud = sum(1 for lab in seeded["labels"].values() if lab["is_fraud"])
            assert metrics["Fraud rate"] == f"{fraud / len(rows):.2%}"
            assert metrics["Dead letters"] == f"{len(range(0, ROWS, DEAD_EVERY)):,}"
            shot = tmp_path / "dashboard.png"
            page.wait_for_timeout(1500)  # let the charts finish drawing
            page.screenshot(path=str(shot), full_page=True)

            # A filter narrows the latest-decisions table.
            page.get_by_role("tab", name="Decisions").click()
            assert _rows_shown(page.get_by_role("tabpanel", name="Decisions")) == min(
                200, len(rows)
            )
            page.get_by_label("Customer id").first.fill(rows[0]["customer_id"])
            page.get_by_label("Customer id").first.press("Enter")
            same_customer = sum(r["customer_id"] == rows[0]["customer_id"] for r in rows)
            expect(page.get_by_text(f"{same_customer:,} row(s) shown")).to_be_visible(
                timeout=30_000
            )

            # By default the page is read-only: the queue shows, with no way to label it.
            page.get_by_role("tab", name="Review queue").click()
            expect(page.get_by_text(re.compile("Labelling is off"))).to_be_visible(timeout=30_000)
            assert page.get_by_role("button", name="Mark fraud").count() == 0
            assert page.get_by_role("button", name="Sign in").count() == 0

            # Every range, including all time, draws its charts with no warning in the console.
            page.get_by_role("tab", name="Overview").click()
            for choice in ("Last 15 minutes", "Last day", "All time"):
                page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
                page.get_by_role("option", name=choice).click()
                page.wait_for_timeout(1500)
            assert _vega_warnings(console) == [], console

            # Only the open tab runs queries, and a customer lookup re-runs the customer's own
            # five SELECTs, not the range's figures (counted by the server).
            with _select_counter(seeded["db_url"]) as selects:
                page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
                page.get_by_role("option", name="Last day").click()
                expect(page.get_by_text("Updated ")).to_be_visible(timeout=30_000)
                overview = _settled(selects, at_least=10)
                page.get_by_role("tab", name="Customer").click()
                customer_tab = page.get_by_role("tabpanel", name="Customer")
                expect(customer_tab.get_by_text("Enter a customer id")).to_be_visible(
                    timeout=30_000
                )
                opening = _settled(selects) - overview
                box = customer_tab.get_by_label("Customer id")
                box.fill(rows[0]["customer_id"])
                box.press("Enter")
                expect(customer_tab.get_by_text("Std of amount")).to_be_visible(timeout=30_000)
                lookup = _settled(selects) - overview - opening
            assert overview >= 10, overview
            assert opening == 0, opening
            assert lookup <= 6, (lookup, overview)
        finally:
            browser.close()

    assert shot.stat().st_size > 20_000
    if os.environ.get(SCREENSHOT_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


ANALYST, PASSWORD = "erin", "correct horse battery staple"


@pytest.fixture
def labelling_dashboard(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The seeded dashboard with labelling on and one analyst, erin (hash made by the CLI)."""
    now = utc_now()
    engine = make_engine(Settings(database_url=db_url))
    seed_database(engine, ROWS, now=now, span_seconds=SPAN, seed=SEED)
    engine.dispose()
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "from payscore.cli.app import main; main()",
            "dashboard",
            "hash-password",
            ANALYST,
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=payscore_env(),
        check=True,
    )
    entry = made.stdout.strip()
    assert entry.startswith(f"{ANALYST}:$2b$") and PASSWORD not in made.stdout + made.stderr
    rows = list(synthetic_rows(ROWS, now=now, span_seconds=SPAN, seed=SEED))
    with _serving(
        db_url, payscore_env, tmp_path, dashboard_labelling=True, dashboard_users=entry
    ) as url:
        yield url, rows


def test_labelling_needs_signing_in_in_chromium(
    labelling_dashboard: tuple[str, list[dict[str, Any]]], db_url: str, tmp_path: Path
) -> None:
    """No label control before signing in; a wrong password is refused; the right one lets
    erin label; the label records her, and a later chargeback does not erase it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url, rows = labelling_dashboard
    labels = {lab["transaction_id"] for lab in map(label_for, rows) if lab}
    waiting = [r for r in rows if r["status"] == "REVIEW" and r["transaction_id"] not in labels]
    oldest = min(waiting, key=lambda r: r["event_time"])["transaction_id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            context.add_init_script(RECORD_CANVAS_TEXT)
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Review queue").click()
            expect(page.get_by_text(re.compile(r"Sign in \(sidebar\) to label"))).to_be_visible(
                timeout=30_000
            )
            assert page.get_by_role("button", name="Mark fraud").count() == 0
            page.screenshot(path=str(tmp_path / "signed-out.png"), full_page=True)

            sidebar = page.locator("[data-testid='stSidebar']")
            sidebar.get_by_role("textbox", name="Analyst").fill(ANALYST)
            sidebar.get_by_role("textbox", name="Password").fill("not her password")
            sidebar.get_by_role("button", name="Sign in").click()
            expect(sidebar.get_by_text("Wrong analyst name or password.")).to_be_visible(
                timeout=30_000
            )
            assert page.get_by_role("button", name="Mark fraud").count() == 0

            sidebar.get_by_role("textbox", name="Analyst").fill(ANALYST)
            sidebar.get_by_role("textbox", name="Password").fill(PASSWORD)
            sidebar.get_by_role("button", name="Sign in").click()
            expect(sidebar.get_by_text(f"Signed in as {ANALYST}")).to_be_visible(timeout=30_000)
            mark = page.get_by_role("button", name="Mark fraud")
            expect(mark).to_be_visible(timeout=30_000)
            # The picker shows the whole label of the oldest payment, score included.
            combo = page.get_by_role("combobox", name="Payment")
            shown = combo.input_value()
            assert re.fullmatch(rf"{oldest} · C\d+ · [\d,]+\.\d\d \w+ · \d\.\d{{4}}", shown), shown
            picker = page.locator("[data-testid='stSelectbox']").filter(has=combo)
            holding, clipped = picker.evaluate(TEXT_CLIPPED, oldest)
            assert holding >= 1 and clipped == 0, (holding, clipped)
            mark.click()
            done = page.get_by_text(re.compile(f"marked fraud by {ANALYST}"))
            expect(done).to_be_visible(timeout=30_000)
            tx = done.inner_text().split()[0]
            assert tx == oldest
            # The history opens on that payment: erin's verdict, and it counts.
            expect(page.get_by_text(f"(analyst by {ANALYST}")).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)  # let the canvas-drawn tables draw
            assert ANALYST in set(page.evaluate("window.__drawn"))
            page.get_by_text("Label history", exact=True).scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "signed-in.png"))

            # A chargeback saying "legitimate" arrives from the labels topic afterwards.
            engine = make_engine(Settings(database_url=db_url))
            known = rows[0]["scored_at"]
            DecisionWriter(engine).write_batch(
                [],
                labels=[
                    {
                        "transaction_id": tx,
                        "is_fraud": False,
                        "known_at": known,
                        "kafka_topic": "payments.labels",
                        "kafka_partition": 0,
                        "kafka_offset": 9,
                    }
                ],
            )
            with engine.connect() as conn:
                counted = conn.execute(
                    select(fraud_labels).where(fraud_labels.c.transaction_id == tx)
                ).one()
                history = conn.execute(
                    select(label_events.c.source, label_events.c.labelled_by)
                    .where(label_events.c.transaction_id == tx)
                    .order_by(label_events.c.id)
                ).all()
            engine.dispose()
            assert (counted.is_fraud, counted.source, counted.labelled_by) == (
                True,
                "analyst",
                ANALYST,
            )
            assert [tuple(h) for h in history] == [("analyst", ANALYST), ("stream", None)]

            # A new visitor (no sign-in) sees both events, and erin's verdict still counts.
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)
            page.get_by_role("tab", name="Review queue").click()
            assert page.get_by_role("button", name="Mark fraud").count() == 0
            box = page.get_by_label("Transaction id")
            box.fill(tx)
            box.press("Enter")
            expect(page.get_by_text(f"(analyst by {ANALYST}")).to_be_visible(timeout=30_000)
            review = page.get_by_role("tabpanel", name="Review queue")
            expect(review.get_by_text("2 row(s) shown", exact=True)).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)
            drawn = set(page.evaluate("window.__drawn"))
            assert {"stream", "analyst", "legitimate", "fraud"} <= drawn, sorted(drawn)[:80]
            review.get_by_role("button", name="Download label history (CSV)").hover()
            page.screenshot(path=str(tmp_path / "history.png"))
        finally:
            browser.close()


@pytest.fixture
def demo_dashboard(
    db_url: str, payscore_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """What a new user opens after `payscore demo`: 20,000 decisions within 6 seconds, ending
    at 22:16:06 UTC yesterday (a time whose 12-hour label differs from its 24-hour one)."""
    end = datetime.combine(utc_now().date() - timedelta(days=1), time(22, 16, 6))
    engine = make_engine(Settings(database_url=db_url))
    seed_database(engine, DEMO_ROWS, now=end, span_seconds=DEMO_SPAN, seed=SEED)
    engine.dispose()
    rows = list(synthetic_rows(DEMO_ROWS, now=end, span_seconds=DEMO_SPAN, seed=SEED))
    with _serving(db_url, payscore_env, tmp_path) as url:
        yield url, rows


def test_demo_run_in_chromium(
    demo_dashboard: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The headline fits, the activity chart has per-second bins labelled in 24-hour UTC (in a
    browser in New York), and amounts are drawn with two decimals."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url, rows = demo_dashboard
    counts = Counter(r["status"] for r in rows)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1500, "height": 1100}, timezone_id="America/New_York"
            )
            context.add_init_script(RECORD_CANVAS_TEXT)
            page = context.new_page()
            console = _watch_console(page)
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)
            page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
            page.get_by_role("option", name="All time").click()
            decided = page.locator(".ps-value").first
            expect(decided).to_have_text(f"{DEMO_ROWS:,}", timeout=30_000)

            # Every headline figure is shown whole: counts with their rates under them.
            metrics, notes = _metrics(page), _metrics(page, "stMetricDelta")
            for status in ("APPROVED", "REVIEW", "DECLINED"):
                n = counts[status]
                assert metrics[status.title()] == f"{n:,}"
                assert notes[status.title()] == f"{n / DEMO_ROWS:.2%}"
            assert re.fullmatch(r"over [56]\.\d s active", notes["Throughput"]), notes
            assert re.fullmatch(r"[\d,]+/s", metrics["Throughput"]), metrics
            assert page.evaluate(CLIPPED_METRICS) == []

            # The activity chart: per-second bins, axis in 24-hour UTC although the browser
            # is five hours behind.
            expect(page.get_by_text("Payments and decisions per second")).to_be_visible()
            chart = page.locator(".ps-chart").first
            expect(chart.locator("svg text").first).to_be_attached(timeout=30_000)
            labels = chart.locator("svg text").evaluate_all("els => els.map(e => e.textContent)")
            times = [t for t in labels if re.fullmatch(r"\d\d:\d\d:\d\d", t or "")]
            assert len(times) >= 3 and all(t.startswith("22:16:0") for t in times), labels
            # One colour-blind-safe palette: reviews orange, declines vermillion; the partial
            # first and last seconds are dashed and said to be.
            colours = set(chart.evaluate(CHART_COLOURS))
            assert {SERIES_COLOURS["review"], SERIES_COLOURS["declined"]} <= colours, colours
            assert {"#F29900", "#D63031", "#4E79A7"}.isdisjoint(colours)
            dashes = chart.locator("svg path[stroke-dasharray]")
            assert dashes.count() >= 1
            # Pointing at a bin reaches its band, whose tooltip gives every series' count.
            band = chart.locator(".ps-bin").nth(2).bounding_box()
            assert band is not None
            hovered = page.evaluate(POINTED_TITLE, [band["x"] + band["width"] / 2, band["y"] + 5])
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d 22:16:02 UTC · payments [\d,]+ · review [\d,]+ · declined [\d,]+",
                hovered,
            ), hovered
            expect(page.get_by_text(re.compile("first and last bins hold part"))).to_be_visible()
            page.wait_for_timeout(1500)  # let the charts finish drawing
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

            # The latest decisions: amounts drawn with exactly two decimals, times 24-hour.
            page.get_by_role("tab", name="Decisions").click()
            expect(page.get_by_text("200 row(s) shown")).to_be_visible(timeout=30_000)
            newest = sorted(rows, key=lambda r: r["scored_at"], reverse=True)[:5]
            # The canvas draws when the browser gets to it: wait (generously) for the newest
            # amount to be drawn, then read everything drawn.
            page.wait_for_function(
                "text => window.__drawn.includes(text)",
                arg=f"{newest[0]['amount']:.2f}",
                timeout=60_000,
            )
            drawn = set(page.evaluate("window.__drawn"))
            for r in newest:
                assert f"{r['amount']:.2f}" in drawn, (r["amount"], sorted(drawn)[:50])
                assert f"{r['amount']:.6f}" not in drawn
            day = newest[0]["scored_at"].date().isoformat()
            assert any(t.startswith(f"{day} 22:16:0") for t in drawn), sorted(drawn)[:50]

            # 400 velocity alerts in the demo: the list of 100 says it is capped.
            page.get_by_role("tab", name="Risk").click()
            risk = page.get_by_role("tabpanel", name="Risk")
            expect(
                risk.get_by_text("100 row(s) shown, capped: more velocity alerts")
            ).to_be_visible(timeout=30_000)

            # A customer's payments in the same palette, statuses in shapes too.
            page.get_by_role("tab", name="Customer").click()
            box = page.get_by_role("tabpanel", name="Customer").get_by_label("Customer id")
            box.fill(newest[0]["customer_id"])
            box.press("Enter")
            scatter = page.get_by_role("tabpanel", name="Customer").locator(".ps-chart")
            expect(scatter.locator("svg circle, svg path, svg rect").first).to_be_attached(
                timeout=30_000
            )
            page.wait_for_timeout(1500)
            statuses = {r["status"] for r in rows if r["customer_id"] == newest[0]["customer_id"]}
            drawn_colours = set(scatter.evaluate(CHART_COLOURS))
            assert {STATUS_COLOURS[s] for s in statuses} <= drawn_colours, drawn_colours

            page.get_by_role("tab", name="Overview").click()
            page.wait_for_timeout(1000)
            assert _vega_warnings(console) == [], console
        finally:
            browser.close()
