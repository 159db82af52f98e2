"""The overview's charts and headline: one status palette, shapes beside colours, partial end
bins marked, every figure whole."""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET

import pandas as pd

from payscore.dashboard.figures import (
    SERIES_COLOURS,
    STATUS_COLOURS,
    STATUS_MARKS,
    STATUS_SHAPES,
    tint,
)
from payscore.dashboard.inline import (
    Figure,
    headline_html,
    histogram_svg,
    nice_ticks,
    scatter_svg,
)
from payscore.dashboard.views import activity_figure


def _activity(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket": pd.date_range("2026-12-01 22:16:00", periods=n, freq="1s"),
            "payments": [3] * n,
            "approved": [1] * n,
            "review": [1] * n,
            "declined": [1] * n,
        }
    )


def test_one_palette_for_tables_and_charts() -> None:
    assert SERIES_COLOURS["review"] == STATUS_COLOURS["REVIEW"] == "#E69F00"
    assert SERIES_COLOURS["declined"] == STATUS_COLOURS["DECLINED"] == "#D55E00"
    # The tables' marks take the charts' shapes: blue circle, orange square, red triangle.
    assert STATUS_SHAPES == {"APPROVED": "circle", "REVIEW": "square", "DECLINED": "triangle-up"}
    assert [unicodedata.name(m) for m in STATUS_MARKS.values()] == [
        "LARGE BLUE CIRCLE",
        "LARGE ORANGE SQUARE",
        "UP-POINTING RED TRIANGLE",
    ]
    assert tint("#D55E00", 0.3) == "rgba(213, 94, 0, 0.3)"


def _parsed(markup: str) -> ET.Element:
    """The markup as XML: it must be well formed to be drawn as written."""
    return ET.fromstring(markup)


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _of(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [el for el in svg.iter() if el.get("class") == kind]


def test_activity_marks_the_partial_end_bins() -> None:
    markup = activity_figure(_activity(5), 1)
    assert "\n" not in markup  # one line: Markdown would end the HTML block at a blank one
    svg = _parsed(markup).find("svg")
    assert svg is not None
    # A dashed line under every bin and a solid one between whole bins, per series.
    dashed, solid = _of(svg, "ps-line-dashed"), _of(svg, "ps-line")
    assert [p.get("stroke") for p in dashed] == list(SERIES_COLOURS.values())
    assert [p.get("stroke") for p in solid] == list(SERIES_COLOURS.values())
    assert all(p.get("stroke-dasharray") for p in dashed)
    assert not any(p.get("stroke-dasharray") for p in solid)
    assert all(p.get("d").count("L") == 4 for p in dashed)  # 5 points
    assert all(p.get("d").count("L") == 2 for p in solid)  # the 3 whole bins
    # The points of a series in one path each: the whole bins filled, the two ends hollow.
    whole, ends = _of(svg, "ps-points"), _of(svg, "ps-points-partial")
    assert [p.get("fill") for p in whole] == list(SERIES_COLOURS.values())
    assert {p.get("fill") for p in ends} == {"none"}
    assert [p.get("stroke") for p in ends] == list(SERIES_COLOURS.values())
    assert [p.get("d").count("M") for p in whole] == [3, 3, 3]  # circles are one move each
    assert [p.get("d").count("M") for p in ends] == [2, 2, 2]
    assert whole[1].get("d").count("v") == 3  # a square (one side down) per review point
    # A band per bin carries its figures as a tooltip, the ends said to be partial.
    tips = [b.find("title").text for b in _of(svg, "ps-bin")]
    assert tips[0] == "2026-12-01 22:16:00 UTC · payments 3 · review 1 · declined 1 · partial bin"
    assert tips[2] == "2026-12-01 22:16:02 UTC · payments 3 · review 1 · declined 1"
    bands = [(float(b.get("x")), float(b.get("width"))) for b in _of(svg, "ps-bin")]
    assert all(abs(x + w - nx) < 0.11 for (x, w), (nx, _) in zip(bands, bands[1:], strict=False))
    # The time axis in 24-hour UTC, as the bin asks.
    texts = [t.text for t in svg.iter() if _tag(t) == "text"]
    assert {"22:16:00", "22:16:04", "payments", "review", "declined"} <= set(texts), texts


def test_a_single_bin_is_not_partial() -> None:
    svg = _parsed(activity_figure(_activity(1), 1)).find("svg")
    assert not [p for p in svg.iter() if p.get("stroke-dasharray")]
    assert not _of(svg, "ps-points-partial") and len(_of(svg, "ps-points")) == 3
    (band,) = _of(svg, "ps-bin")
    assert "partial" not in band.find("title").text


def test_time_labels_are_spread_and_counts_scale() -> None:
    frame = _activity(120).assign(payments=range(120))
    svg = _parsed(activity_figure(frame, 60)).find("svg")
    labels = [t.text for t in svg.iter() if _tag(t) == "text" and ":" in (t.text or "")]
    assert 3 <= len(labels) <= 6 and labels[0] == "22:16", labels
    ticks = [t.text for t in svg.iter() if _tag(t) == "text" and t.get("text-anchor") == "end"]
    assert ticks == ["0", "50", "100", "150"]  # 119 at most: 3 steps of 50
    assert nice_ticks(938_219) == [k * 200_000 for k in range(6)]
    assert nice_ticks(0) == [0.0, 1.0]


def test_histogram_bars_span_the_scores() -> None:
    counts = [5, 0, 1_234, 7]
    svg = _parsed(histogram_svg([0.0, 0.25, 0.5, 0.75], counts)).find("svg")
    bars = [r for r in svg.iter() if _tag(r) == "rect"]
    assert [b.find("title").text for b in bars][2] == "scores 0.50-0.75: 1,234 payments"
    assert {b.get("fill") for b in bars} == {SERIES_COLOURS["payments"]}
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == 0 and heights[2] == max(heights) and heights[0] < heights[3]
    xs = [float(b.get("x")) for b in bars]
    assert xs == sorted(xs)


def test_headline_escapes_and_keeps_each_figure_whole() -> None:
    markup = headline_html(
        [Figure("Payments decided", "10,049,060"), Figure("<b>", "1", "98.10%", 'say "hi"')]
    )
    root = _parsed(markup)
    figures = root.findall("div")
    assert [f.get("class") for f in figures] == ["ps-figure"] * 2
    label, value = figures[1].findall("div")[:2]
    assert (label.text, value.text) == ("<b>", "1")  # shown as text, never as markup
    assert figures[1].get("title") == 'say "hi"'
    assert "dotted" in label.get("style")  # a label with help says so
    assert "dotted" not in figures[0].find("div[@class='ps-label']").get("style")
    assert figures[1].find("div[@class='ps-note']").text == "98.10%"
    assert "white-space:nowrap" in figures[0].find("div[@class='ps-value']").get("style")
    assert "repeat(5," in root.get("style")


def test_a_customers_payments_in_the_status_palette_and_shapes() -> None:
    times = list(pd.date_range("2026-12-01 10:00", periods=3, freq="1h").to_pydatetime())
    svg = _parsed(scatter_svg(times, [12.5, 300.0, 40.0], ["APPROVED", "DECLINED", "APPROVED"]))
    points = {el.find("title").text: el for el in svg.iter() if el.find("title") is not None}
    declined = points["2026-12-01 11:00:00 UTC · 300.00 · DECLINED"]
    assert declined.get("fill") == STATUS_COLOURS["DECLINED"] and "L" in declined.get("d")
    approved = points["2026-12-01 10:00:00 UTC · 12.50 · APPROVED"]
    assert approved.get("fill") == STATUS_COLOURS["APPROVED"] and "a" in approved.get("d")
    # In time order from left to right, the larger amount higher (smaller y).
    later = points["2026-12-01 12:00:00 UTC · 40.00 · APPROVED"]
    (x0, y0), (x1, y1) = (_start(p) for p in (approved, later))
    assert x0 < x1 and y1 < y0
    # The legend names the statuses shown only, with the time axis in UTC.
    texts = [t.text for t in svg.iter() if _tag(t) == "text"]
    assert "APPROVED" in texts and "DECLINED" in texts and "REVIEW" not in texts
    assert "12-01 10:00" in texts and "12-01 12:00" in texts
    assert _parsed(scatter_svg([], [], [])).find(".//title") is None


def _start(path: ET.Element) -> tuple[float, float]:
    """Where a point's outline starts (its left edge, at its centre's height)."""
    x, y = path.get("d")[1:].split("a")[0].split()
    return float(x), float(y)
