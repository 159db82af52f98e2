"""The browser benchmark's floor: a Streamlit page of one title and one line, no database.

Its first load, timed in the same browser and run as the dashboard's, is what Streamlit alone
takes on the machine (its scripts and styles, the session's WebSocket, one script run), so the
dashboard's own share of a first load is the difference. With ``?with=`` one of ``EXTRAS`` the
page also draws one kind of element the dashboard's overview draws, so what each kind adds to a
first load is timed too. Streamlit runs this file as ``__main__``; imported, it draws nothing
(the benchmark reads ``TITLE`` and ``EXTRAS``)."""

from collections.abc import Callable
from datetime import datetime, timedelta

import streamlit as st

from payscore.dashboard import inline

TITLE = "payscore - browser floor"
LINE = "One title and one line: what Streamlit alone takes to draw."
FIGURES = 10  # as many as the overview's headline
LAST_FIGURE = f"Figure {FIGURES}"
POINTS = 120  # an hour of the activity chart in 30-second bins


def _values() -> list[int]:
    """Fixed, chart-like values (no randomness: every load draws the same page)."""
    return [250 + (k * 37) % 200 for k in range(POINTS)]


def _chart() -> None:
    """One Vega-Lite line chart, the overview's kind (two are on it)."""
    rows = [{"minute": k, "payments": v} for k, v in enumerate(_values())]
    spec = {
        "data": {"values": rows},
        "mark": {"type": "line"},
        "encoding": {
            "x": {"field": "minute", "type": "quantitative"},
            "y": {"field": "payments", "type": "quantitative"},
        },
    }
    st.vega_lite_chart(None, spec, width="stretch")


def _metrics() -> None:
    """Ten metrics in two rows of five, with grey notes: the overview's headline."""
    for row in range(2):
        for k, col in enumerate(st.columns(5), start=row * 5 + 1):
            value, note = f"{k * 12_345:,}", f"{k / 10:.2f}%"
            col.metric(f"Figure {k}", value, delta=note, delta_color="off", delta_arrow="off")


def _html() -> None:
    """The same ten figures and two charts as HTML and inline SVG, drawn as the overview draws
    them (``inline``, through Markdown)."""
    figures = [
        inline.Figure(f"Figure {k}", f"{k * 12_345:,}", f"{k / 10:.2f}%")
        for k in range(1, FIGURES + 1)
    ]
    start = datetime(2026, 12, 1, 22, 0)
    times = [start + timedelta(seconds=30 * k) for k in range(POINTS)]
    values = _values()
    series = {
        "payments": values,
        "review": [v // 20 for v in values],
        "declined": [v // 50 for v in values],
    }
    bins = 20
    starts = [k / bins for k in range(bins)]
    chart = inline.activity_svg(times, series, "%H:%M")
    hist = inline.histogram_svg(starts, [values[k] * (bins - k) for k in range(bins)])
    for markup in (inline.headline_html(figures), chart, hist):
        st.markdown(markup, unsafe_allow_html=True)


# name in ?with= -> (what it adds, how it draws it)
EXTRAS: dict[str, tuple[str, Callable[[], None]]] = {
    "chart": ("one Vega-Lite chart", _chart),
    "metrics": ("ten metrics", _metrics),
    "html": ("ten figures and two charts as HTML and SVG", _html),
}


def main() -> None:
    st.set_page_config(page_title="payscore floor", layout="wide")
    st.title(TITLE)
    st.write(LINE)
    extra = EXTRAS.get(st.query_params.get("with", ""))
    if extra is not None:
        extra[1]()


if __name__ == "__main__":
    main()
