"""The charts' specs: one status palette, shapes beside colours, partial end bins marked."""

from __future__ import annotations

import json
import unicodedata

import altair as alt
import pandas as pd
import pytest

from payscore.dashboard.figures import (
    SERIES_COLOURS,
    SERIES_SHAPES,
    STATUS_COLOURS,
    STATUS_MARKS,
    STATUS_SHAPES,
    score_histogram_spec,
    tint,
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


def test_activity_marks_the_partial_end_bins() -> None:
    spec = activity_figure(_activity(5), 1)
    text = json.dumps({k: v for k, v in spec.items() if k != "datasets"})
    assert json.dumps(list(SERIES_COLOURS.values())) in text
    layers = spec["layer"]
    marks = [(layer["mark"]["type"], layer.get("transform")) for layer in layers]
    assert marks[0] == ("line", None)  # the dashed line through every bin
    assert layers[0]["mark"]["strokeDash"]
    assert marks[1][1] == [{"filter": "!datum.partial"}]  # solid between whole bins
    assert layers[3]["mark"]["filled"] is False
    assert layers[3]["transform"] == [{"filter": "datum.partial"}]
    assert [layer["encoding"]["shape"]["scale"]["range"] for layer in layers[2:]] == [
        list(SERIES_SHAPES.values())
    ] * 2
    data = spec["datasets"][spec["data"]["name"]]
    assert str(data["bucket"].dt.tz) == "UTC"  # naive times would shift to the browser's zone
    partial = sorted(set(zip(data["bucket"], data["partial"], strict=True)))
    assert [p for _, p in partial] == [True, False, False, False, True]


def test_the_specs_are_valid_vega_lite() -> None:
    """Checked against the Vega-Lite schema Altair ships (the page no longer validates them)."""
    activity = activity_figure(_activity(5), 60)
    scores = {**score_histogram_spec(20), "data": {"values": []}}
    for spec in (activity, scores):
        plain = {k: v for k, v in spec.items() if k != "datasets"}
        if "datasets" in spec:
            plain["data"] = {"values": []}
        alt.Chart.from_dict(plain)  # raises on a spec the schema refuses
    with pytest.raises(Exception):  # noqa: B017 - the schema's own error type varies
        alt.Chart.from_dict({"mark": {"type": "no-such-mark"}, "data": {"values": []}})


def test_a_single_bin_is_not_partial() -> None:
    spec = activity_figure(_activity(1), 1)
    assert set(spec["datasets"]["activity"]["partial"]) == {False}
