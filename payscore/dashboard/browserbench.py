"""Time the dashboard as an analyst sees it: ``payscore dashboard`` driven by headless Chromium.

    python -m payscore.dashboard.browserbench --database-url mysql://u@host/db --rows 10000000

Seeds ``--rows`` synthetic decisions into an empty database (bulk-loaded), or reuses one that
already holds that many and tops it up to the present at its own rate (so "Last hour" is full
however long ago it was seeded), starts ``payscore dashboard`` on it and drives Chromium through
what an analyst does, ``--runs`` times, each in a new browser session: open the page (Last
hour), change the range to Last day, Last 7 days and All time, switch tabs (at Last day), and
look up customers: the session's first lookup apart, then one at each range. Each action is
timed in the page, from the input event to the frame at which its content is drawn (see
``browserpage``); the report gives median and max. The floor, timed in the same browser and
run, is the first load of a one-line Streamlit page (``floorpage``) served like the dashboard:
what Streamlit alone takes on the machine; then the same page with one kind of the overview's
elements added (a Vega-Lite chart, ten metrics, the same as plain HTML), what each kind adds.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from payscore.cli.dashboard import streamlit_command
from payscore.config import load_settings
from payscore.dashboard import floorpage
from payscore.dashboard.bench import data_arguments, ensure_rows
from payscore.dashboard.browserpage import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OVERVIEW,
    BenchPage,
    Drawn,
    Timing,
)
from payscore.dashboard.bulkseed import top_up
from payscore.errors import PayscoreError, ServiceUnavailable
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import scored_transactions

RANGES = ("Last day", "Last 7 days", "All time")
LOOKUP_RANGES = ("Last hour", *RANGES)
SWITCHES = ("Decisions", "Risk", "Review queue", "Model", "Overview")
GOALS = {"first load": 1.5, "range change": 0.5, "customer lookup": 0.3}  # seconds
PROFILE_TAB = Drawn(("Customer risk profile", "Updated "))
FLOOR_PAGE = Path(floorpage.__file__)  # served by Streamlit; imported, it draws nothing
FLOOR = Drawn((floorpage.TITLE,))
# The floor with one kind of the overview's elements (``floorpage.EXTRAS``): what each adds.
FLOOR_WITH = {
    "chart": Drawn((floorpage.TITLE,), charts=1),
    "metrics": Drawn((floorpage.TITLE, floorpage.LAST_FIGURE)),
    "html": Drawn((floorpage.TITLE, floorpage.LAST_FIGURE), charts=2),
}
FIRST_LOOKUP = "customer lookup, the session's first (Last day)"
FLOOR_LOAD = "floor: a one-line Streamlit page's first load"


def floor_extra(extra: str) -> str:
    """The action name of the floor's first load with ``extra`` (``floorpage.EXTRAS``)."""
    return f"floor + {floorpage.EXTRAS[extra][0]}"


def goal_of(action: str) -> float | None:
    return next((g for prefix, g in GOALS.items() if action.startswith(prefix)), None)


def pick_customers(engine: Engine, n: int) -> list[str]:
    """``n`` customers with recent decisions (distinct, newest first), repeated if too few."""
    st = scored_transactions.c
    recent = select(st.customer_id).order_by(st.scored_at.desc()).limit(max(50 * n, 1000))
    with engine.connect() as conn:
        seen = list(dict.fromkeys(conn.execute(recent).scalars()))
    if not seen:
        raise PayscoreError("the database holds no decisions")
    return [seen[i % len(seen)] for i in range(n)]


@contextmanager
def serving(
    env: dict[str, str], port: int, log: Path, cwd: Path | None = None, floor: bool = False
) -> Iterator[str]:
    """``payscore dashboard --port port`` with ``env`` (its settings as PAYSCORE_*, never on
    the command line); yields its URL once it serves, stops it afterwards. With ``floor``,
    Streamlit serves ``floorpage`` instead, with the dashboard's own server options."""
    if floor:
        argv = streamlit_command("127.0.0.1", port, FLOOR_PAGE)
    else:
        command = [sys.executable, "-c", "from payscore.cli.app import main; main()"]
        argv = [*command, "dashboard", "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, log)
            yield url
        finally:
            proc.terminate()  # the CLI stops its Streamlit child on SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the dashboard at ``url`` answers its health check; ServiceUnavailable if its
    process ``proc`` exits first or two minutes pass (with the tail of its ``log``)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"payscore dashboard exited early: {log.read_text()[-500:]}")
        try:
            health = f"{url}/_stcore/health"  # our own loopback server
            with urllib.request.urlopen(health, timeout=2) as r:  # noqa: S310
                if r.read().decode() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-500:]
    raise ServiceUnavailable(f"payscore dashboard not serving after 120 s: {tail}")


def check_browser(chromium: str) -> None:
    """Fail before any work when Playwright or Chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        raise PayscoreError("the browser benchmark needs playwright (the dev extra)") from e
    if not Path(chromium).is_file():
        raise PayscoreError(f"Chromium not found at {chromium} (apt-get install chromium)")


def drive(
    url: str, floor_url: str, runs: int, customers: list[str], chromium: str, shot: str | None
) -> Any:
    """Every action ``runs`` times; returns ({action: [Timing]}, {range: headline shown})."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[Timing]] = {}
    shown: dict[str, str] = {}

    def add(action: str, timing: Timing) -> None:
        times.setdefault(action, []).append(timing)
        print(f"browserbench: {action}: {timing.total:.2f} s", file=sys.stderr, flush=True)

    def first_loads(context: Any, at: str, drawn: Drawn, name: str, where: str = "") -> BenchPage:
        """A first visit, then a second with the assets cached; the second page stays open."""
        page = BenchPage(context, at)
        add(f"{name}, new browser profile{where}", page.load(drawn))
        page.close()
        page = BenchPage(context, at)
        add(f"{name}, assets cached{where}", page.load(drawn))
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for at, drawn in ((url, OVERVIEW), (floor_url, FLOOR)):
                warm = BenchPage.new_context(browser)  # a server's first session imports
                BenchPage(warm, at).load(drawn)
                warm.close()
            per_run = len(LOOKUP_RANGES) + 1
            for run in range(runs):
                context = BenchPage.new_context(browser)
                first_loads(context, floor_url, FLOOR, FLOOR_LOAD).close()
                for extra, drawn in FLOOR_WITH.items():
                    at, name = f"{floor_url}/?with={extra}", floor_extra(extra)
                    first_loads(context, at, drawn, name).close()
                page = first_loads(context, url, OVERVIEW, "first load", " (Last hour)")
                shown["Last hour"] = page.headline()
                for choice in RANGES:
                    add(f"range change to {choice}", page.choose_range(choice))
                    shown[choice] = page.headline()
                page.choose_range("Last day")
                for tab in SWITCHES:
                    add(f"tab switch to {tab} (Last day)", page.open_tab(tab))
                add("tab switch to Customer (Last day)", page.open_tab("Customer", PROFILE_TAB))
                # The first lookup of a session mounts the profile's chart and table; later
                # ones update them in place, so it is timed apart from the per-range ones.
                add(FIRST_LOOKUP, page.look_up(customers[run * per_run]))
                for k, choice in enumerate(LOOKUP_RANGES, start=1):
                    page.choose_range(choice, PROFILE_TAB)
                    add(f"customer lookup at {choice}", page.look_up(customers[run * per_run + k]))
                context.close()
            if shot:
                context = BenchPage.new_context(browser)
                page = BenchPage(context, url)
                page.load()
                page.screenshot(shot)
                context.close()
        finally:
            browser.close()
    return times, shown


def report(times: dict[str, list[Timing]], shown: dict[str, str]) -> list[str]:
    """A markdown table: median and max per action, the goal, and where the median went."""
    lines = [
        "| action | runs | median | max | goal | met | median parts: to start / script / draw |",
        "|---|---|---|---|---|---|---|",
    ]
    for action, timings in times.items():
        goal = goal_of(action)
        totals = [t.total for t in timings]
        median, worst = statistics.median(totals), max(totals)
        met = "-" if goal is None else ("yes" if median < goal else "no")
        if goal is not None and met == "yes" and worst >= goal:
            met = "median only"
        parts = " / ".join(
            f"{statistics.median(getattr(t, f) for t in timings):.2f}"
            for f in ("to_start", "script", "draw")
        )
        lines.append(
            f"| {action} | {len(timings)} | {median:.2f} s | {worst:.2f} s | "
            f"{'-' if goal is None else f'< {goal:g} s'} | {met} | {parts} s |"
        )
    lines.append("")
    lines.append("Payments decided shown: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return lines


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def run(args: argparse.Namespace) -> str:
    check_browser(args.chromium)
    settings = load_settings(overrides={"database_url": args.database_url}).settings
    engine = make_engine(settings)
    lines: list[str] = []
    try:
        create_schema(engine)
        ensure_rows(engine, args.rows, args.span_days, lines)
        added = top_up(engine, progress=lambda _n: None)
        if added:
            lines.append(f"topped up {added:,} decisions to the present")
        with engine.connect() as conn:
            present = conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
        lines.append(f"database: {engine.dialect.name}, {present:,} decisions")
        customers = pick_customers(engine, args.runs * (len(LOOKUP_RANGES) + 1))
    finally:
        engine.dispose()
    port = args.port or _free_port()
    lines.append(f"before: {_load()} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="payscore-browserbench-") as tmp:
        env = {**os.environ, "PAYSCORE_DATABASE_URL": settings.database_url}
        floor_port = next(p for p in iter(_free_port, None) if p != port)
        with (
            serving(env, port, Path(tmp) / "dashboard.log") as url,
            serving(env, floor_port, Path(tmp) / "floor.log", floor=True) as floor_url,
        ):
            times, shown = drive(
                url, floor_url, args.runs, customers, args.chromium, args.screenshot
            )
    lines.append(f"after: {_load()}")
    lines.append("")
    return "\n".join(lines + report(times, shown))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_arguments(parser, 10_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of every action")
    parser.add_argument("--port", type=int, default=0, help="dashboard port (default: free)")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium executable")
    parser.add_argument("--screenshot", help="also save a full-page PNG of the first load here")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100 or args.rows < 1:
        parser.error("--runs must be 1-100 and --rows at least 1")
    # A SIGTERM must still stop the dashboard it started (the finally blocks run).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(run(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except PayscoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
