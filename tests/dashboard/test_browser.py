"""End to end: `payscore dashboard` on a seeded MariaDB, driven by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from payscore.config import Settings
from payscore.dashboard.figures import utc_now
from payscore.dashboard.seed import label_for, seed_database, synthetic_rows
from payscore.store.engine import make_engine
from payscore.store.schema import fraud_labels

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_ENV = "PAYSCORE_UPDATE_SCREENSHOT"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
ROWS, SPAN, SEED, DEAD_EVERY = 400, 20 * 60, 3, 25

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = _free_port()
    log = (tmp_path / "dashboard.log").open("w")
    command = [sys.executable, "-c", "from payscore.cli.app import main; main()"]
    proc = subprocess.Popen(
        [*command, "dashboard", "--port", str(port)],
        env=payscore_env(database_url=db_url),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, tmp_path / "dashboard.log")
        yield url, {"rows": rows, "labels": labels, "db_url": db_url}
    finally:
        proc.terminate()  # the CLI stops its Streamlit child on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    with pytest.raises(OSError):  # the server really went away with the CLI
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"payscore dashboard exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"dashboard not healthy after 90 s:\n{log.read_text()}")


def _metrics(page: Any) -> dict[str, str]:
    page.wait_for_selector("[data-testid='stMetricValue']", timeout=60_000)
    out = {}
    for metric in page.locator("[data-testid='stMetric']").all():
        if metric.is_visible():
            label = metric.locator("[data-testid='stMetricLabel']").inner_text().strip()
            out[label] = metric.locator("[data-testid='stMetricValue']").inner_text().strip()
    return out


def _rows_shown(page: Any) -> int:
    text = page.locator("[data-testid='stCaptionContainer']:visible").first.inner_text()
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
            page.goto(url, wait_until="domcontentloaded")

            # Headline figures for the default range (last hour) match the seeded decisions.
            expect(page.get_by_text("Payments decided")).to_be_visible(timeout=60_000)
            metrics = _metrics(page)
            assert metrics["Payments decided"] == f"{len(rows):,}"
            for status in ("APPROVED", "REVIEW", "DECLINED"):
                n = counts[status]
                assert metrics[status.title()] == f"{n:,} ({n / len(rows):.2%})"
            fraud = sum(1 for lab in seeded["labels"].values() if lab["is_fraud"])
            assert metrics["Fraud rate"] == f"{fraud / len(rows):.2%}"
            assert metrics["Dead letters"] == f"{len(range(0, ROWS, DEAD_EVERY)):,}"
            shot = tmp_path / "dashboard.png"
            page.wait_for_timeout(1500)  # let the charts finish drawing
            page.screenshot(path=str(shot), full_page=True)

            # A filter narrows the latest-decisions table.
            page.get_by_role("tab", name="Decisions").click()
            assert _rows_shown(page) == min(200, len(rows))
            page.get_by_label("Customer id").first.fill(rows[0]["customer_id"])
            page.get_by_label("Customer id").first.press("Enter")
            same_customer = sum(r["customer_id"] == rows[0]["customer_id"] for r in rows)
            expect(page.get_by_text(f"{same_customer:,} row(s) shown")).to_be_visible(
                timeout=30_000
            )

            # An analyst marks the oldest review item; the label lands in the database.
            page.get_by_role("tab", name="Review queue").click()
            analyst = page.get_by_label("Analyst")
            analyst.fill("erin")
            analyst.press("Enter")
            page.get_by_role("button", name="Mark fraud").click()
            done = page.get_by_text(re.compile(r"marked fraud by erin"))
            expect(done).to_be_visible(timeout=30_000)
            tx = done.inner_text().split()[0]
        finally:
            browser.close()

    engine = make_engine(Settings(database_url=seeded["db_url"]))
    with engine.connect() as conn:
        label = conn.execute(select(fraud_labels).where(fraud_labels.c.transaction_id == tx)).one()
    engine.dispose()
    assert (label.is_fraud, label.source, label.labelled_by) == (True, "analyst", "erin")
    waiting = [
        r for r in rows if r["status"] == "REVIEW" and r["transaction_id"] not in seeded["labels"]
    ]
    assert tx == min(waiting, key=lambda r: r["event_time"])["transaction_id"]

    assert shot.stat().st_size > 20_000
    if os.environ.get(SCREENSHOT_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
