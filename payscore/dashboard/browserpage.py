"""Timing what an analyst waits for in the dashboard, inside a real browser page (Playwright).

An action is timed in the page itself: from the input event (the click or key press, caught
in the capture phase) to the first animation frame at which the page is drawn: the script
has run again since the input and finished, no element of the previous run is left (Streamlit
marks those ``data-stale``), and the open tab's own content is there, charts drawn as SVG marks
and tables as canvases. A first load is timed from the navigation's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1500, "height": 1100}
WAIT_MS = 180_000  # an action's limit: generous, the machine is shared
START_MS = 20_000  # no run started this long after an input: the input was lost
ATTEMPTS = 3
# A run answered too quickly for the page to ever draw it as running is taken as done once no
# message has arrived for this long (which adds up to this much to its time).
QUIET_MS = 50

# Counts the script's runs (each change of stApp's script state to "running") and stamps the
# first pointer or key press after the bench arms it.
INIT_SCRIPT = """
window.__bench = {runs: 0, msgs: 0, lastMsg: 0, armed: false, t0: null, states: []};
// Messages from the server, counted before Streamlit handles them: a run too quick for React
// to ever draw the "running" state still shows up here.
window.WebSocket = class extends window.WebSocket {
    constructor(...args) {
        super(...args);
        this.addEventListener("message", () => {
            window.__bench.msgs++;
            window.__bench.lastMsg = performance.now();
        });
    }
};
new MutationObserver(records => {
    for (const r of records) {
        const state = r.target.getAttribute("data-test-script-state");
        window.__bench.states.push([state, performance.now()]);
        if (state === "running") window.__bench.runs++;
    }
}).observe(document, {attributes: true, subtree: true,
                      attributeFilter: ["data-test-script-state"]});
for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, () => {
        const b = window.__bench;
        if (b.armed) { b.t0 = performance.now(); b.armed = false; }
    }, true);
}
"""

# True (and the time stamped) once the page is drawn for ``what`` after run number ``after``.
DRAWN = """
([after, msgs, texts, charts, tables]) => {
    const b = window.__bench;
    const app = document.querySelector("[data-testid='stApp']");
    if (!app) return false;
    // A run seen, or (the run too quick to be drawn running) answers handled for QUIET_MS.
    const answered = b.msgs > msgs && performance.now() - b.lastMsg > QUIET_MS;
    if (b.runs <= after && !answered) return false;
    if (app.getAttribute("data-test-script-state") !== "notRunning") return false;
    if (document.querySelector("[data-stale='true']")) return false;
    const main = document.querySelector("[data-testid='stMain']");
    if (!main) return false;
    const shown = el => el.offsetParent !== null;
    const body = main.innerText;
    if (!texts.every(t => body.includes(t))) return false;
    // Vega-Lite charts, and the overview's own SVG charts (``inline``).
    const drawn = Array.from(main.querySelectorAll("[data-testid='stVegaLiteChart'], .ps-chart"))
        .filter(shown);
    if (drawn.length < charts || !drawn.every(c => c.querySelector("svg path, svg line")))
        return false;
    const grids = Array.from(main.querySelectorAll("[data-testid='stDataFrame']")).filter(shown);
    if (grids.length < tables || !grids.every(g => g.querySelector("canvas"))) return false;
    b.done = performance.now();
    return true;
}
"""


PHASES = """
(t0) => {
    const b = window.__bench;
    const after = b.states.filter(([, t]) => t >= t0);
    const run = after.find(([state]) => state === "running");
    const end = after.filter(([state]) => state === "notRunning").pop();
    return [run ? run[1] : null, end ? end[1] : null, b.done];
}
"""


@dataclass(frozen=True)
class Drawn:
    """What the open tab shows once drawn: texts, and at least this many charts and tables."""

    texts: tuple[str, ...]
    charts: int = 0
    tables: int = 0


@dataclass(frozen=True)
class Timing:
    """Seconds from the input to the drawn page, and its three parts: until the script starts
    on the server, the script's run, and drawing after it finished."""

    total: float
    to_start: float
    script: float
    draw: float


OVERVIEW = Drawn(("Payments decided", "Score distribution", "Updated "), charts=2)
TABS = {
    "Overview": OVERVIEW,
    "Decisions": Drawn(("Latest decisions", "shown", "Updated "), tables=1),
    "Risk": Drawn(("Velocity alerts", "Riskiest terminals", "Updated "), tables=3),
    "Review queue": Drawn(("Review queue", "Label history", "Updated "), tables=1),
    "Model": Drawn(("Model in service", "Updated "), tables=2),
}
LOOKUP = Drawn(("Std of amount", "First payment", "Updated "), charts=1, tables=1)


class BenchPage:
    """One browser tab, and so one Streamlit session, on the dashboard. Tabs of one browser
    context share its HTTP cache: the first load in a new context is a first visit."""

    def __init__(self, context: Any, url: str) -> None:
        self.page = context.new_page()
        self.url = url

    @staticmethod
    def new_context(browser: Any) -> Any:
        context = browser.new_context(viewport=VIEWPORT)
        context.add_init_script(INIT_SCRIPT)
        return context

    def close(self) -> None:
        self.page.close()

    def _runs(self) -> tuple[int, int]:
        """Script runs seen and server messages received so far."""
        runs, msgs = self.page.evaluate("[window.__bench.runs, window.__bench.msgs]")
        return int(runs), int(msgs)

    def _wait(self, after: tuple[int, int], drawn: Drawn) -> None:
        self.page.wait_for_function(
            DRAWN.replace("QUIET_MS", str(QUIET_MS)),
            arg=[*after, list(drawn.texts), drawn.charts, drawn.tables],
            polling="raf",
            timeout=WAIT_MS,
        )

    def _timing(self, t0: float) -> Timing:
        run, end, done = self.page.evaluate(PHASES, t0)
        if run is None or end is None:  # a run faster than the observer: no split
            return Timing((done - t0) / 1000, 0.0, 0.0, 0.0)
        ms = (done - t0, run - t0, end - run, done - end)
        return Timing(*(x / 1000 for x in ms))

    def load(self, drawn: Drawn = OVERVIEW) -> Timing:
        """Open the page (default range); from the navigation's start until ``drawn``."""
        self.page.goto(self.url, wait_until="commit")
        self._wait((-1, -1), drawn)
        return self._timing(0.0)

    def _timed(self, prepare: Any, act: Any, drawn: Drawn) -> Timing:
        """``prepare()`` untimed, arm, ``act()`` (whose input event starts the clock), wait
        until drawn. An input the page missed (no run started: on a loaded machine a dropdown
        can close under the click) is tried again, up to ATTEMPTS times, timed afresh."""
        for attempt in range(1, ATTEMPTS + 1):
            prepare()
            after = self._runs()
            self.page.evaluate("window.__bench.armed = true; window.__bench.t0 = null")
            act()
            try:
                self.page.wait_for_function(
                    "([runs, msgs]) => window.__bench.runs > runs || window.__bench.msgs > msgs",
                    arg=list(after),
                    timeout=START_MS,
                )
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: try the input again
                if attempt == ATTEMPTS:
                    raise
        self._wait(after, drawn)
        t0 = self.page.evaluate("window.__bench.t0")
        if t0 is None:
            raise RuntimeError("the action's input event was not seen")
        return self._timing(float(t0))

    def choose_range(self, choice: str, drawn: Drawn = OVERVIEW) -> Timing:
        """Pick ``choice`` in the sidebar's range box; timed from the click on the option."""
        box = self.page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
        option = self.page.get_by_role("option", name=choice, exact=True)

        def open_box() -> None:
            box.click()
            option.wait_for(timeout=WAIT_MS)

        timing = self._timed(open_box, option.click, drawn)
        picked = str(box.locator("input").first.input_value()).strip()
        if picked != choice:  # a click that landed elsewhere: not a timing of this change
            raise RuntimeError(f"the range box shows {picked!r} after choosing {choice!r}")
        return timing

    def open_tab(self, name: str, drawn: Drawn | None = None) -> Timing:
        """Switch to tab ``name``; timed from the click."""
        tab = self.page.get_by_role("tab", name=name, exact=True)
        return self._timed(lambda: None, tab.click, drawn or TABS[name])

    def look_up(self, customer: str) -> Timing:
        """Type a customer id in the Customer tab; timed from the Enter key."""
        panel = self.page.get_by_role("tabpanel", name="Customer")
        box = panel.get_by_label("Customer id")
        return self._timed(lambda: box.fill(customer), lambda: box.press("Enter"), LOOKUP)

    def headline(self) -> str:
        """The "Payments decided" figure as shown."""
        figure = self.page.locator(".ps-value, [data-testid='stMetricValue']").first
        return str(figure.inner_text()).strip()

    def screenshot(self, path: str) -> None:
        self.page.wait_for_timeout(1000)  # chart transitions
        self.page.screenshot(path=path, full_page=True)
