"""The browser benchmark's floor page draws one title and one line, plus the one kind of element
``?with=`` names (AppTest, no browser, no database)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from payscore.dashboard import floorpage


def _page(extra: str | None) -> AppTest:
    at = AppTest.from_file(floorpage.__file__)
    if extra is not None:
        at.query_params["with"] = extra
    return at.run()


def _kinds(at: AppTest) -> list[str]:
    """The kinds of element drawn, in order (iterating a block yields the block first)."""
    return [getattr(e, "type", type(e).__name__) for e in at.main][1:]


@pytest.mark.parametrize("extra", [None, "nope"])
def test_the_floor_is_a_title_and_a_line(extra: str | None) -> None:
    at = _page(extra)
    assert not at.exception
    assert _kinds(at) == ["title", "markdown"]
    assert at.title[0].value == floorpage.TITLE


def test_each_extra_adds_its_own_kind_of_element_only() -> None:
    chart = _page("chart")
    assert _kinds(chart) == ["title", "markdown", "vega_lite_chart"]
    metrics = _page("metrics")
    assert [m.label for m in metrics.metric] == [f"Figure {k}" for k in range(1, 11)]
    assert metrics.metric[-1].label == floorpage.LAST_FIGURE
    html = _page("html")
    assert not html.metric and "vega_lite_chart" not in _kinds(html)
    headline, *charts = (m.value for m in html.markdown[1:])
    assert floorpage.LAST_FIGURE in headline and 'class="ps-headline"' in headline
    assert len(charts) == 2 and all('class="ps-chart"' in c and "<svg" in c for c in charts)
    assert sorted(floorpage.EXTRAS) == ["chart", "html", "metrics"]
