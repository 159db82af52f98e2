"""The drift section of the Model tab: the model in service's score distribution over the
range against its reference, and each feature's population stability index (PSI), so a team
sees when it is time to retrain.

SQL is in ``drift_queries.py``, bins and PSI in ``core/drift.py``; this module lays them out.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from payscore.core.drift import PSI_ACT, PSI_WATCH, SCORE, Reference, Series, band, bin_labels, psi
from payscore.dashboard import drift_queries as dq
from payscore.dashboard.figures import TimeRange
from payscore.dashboard.views import fmt_count, table

MIN_PAYMENTS = 1_000  # below this a PSI is mostly sampling noise (the page says so)
SHARES = {"reference": "#999999", "range": "#0072B2"}
BANDS = (
    f"PSI below {PSI_WATCH:g}: stable. {PSI_WATCH:g} to {PSI_ACT:g}: watch, a moderate shift. "
    f"{PSI_ACT:g} or more: shifted, time to look at the traffic and retrain."
)


def render(conn: Connection, tr: TimeRange) -> None:
    st.subheader("Drift")
    found = dq.model_in_service(conn)
    if found is None:
        st.info("No model in service recorded yet (the consumer records one when it starts).")
        return
    version, meta = found
    if meta is None:
        st.info(f"Model {version} has not decided a payment yet: drift shows once it has.")
        return
    reference = Reference.from_metadata(meta)
    if reference is None:
        st.info(
            f"Model {version} was trained before payscore recorded a drift reference: retrain "
            "it (`payscore train`) and promote the new model to see drift."
        )
        return
    if not dq.has_histograms(conn):
        st.warning("The database lacks the feature_histograms table: run `payscore initdb`.")
        return
    counts = dq.histograms(conn, version, tr)
    span = dq.hour_span(conn, version, tr)
    n = sum(counts.get(SCORE, ()))
    if not n or span is None:
        st.info(f"No payment decided by model {version} in this range.")
        return
    st.caption(
        f"Model {version}: {fmt_count(n)} payments decided in the hours from "
        f"{span[0]:%Y-%m-%d %H:00} to {span[1]:%Y-%m-%d %H:59} UTC (counted per hour), against "
        f"{fmt_count(reference.feature_payments)} payments of its training period (features) "
        f"and {fmt_count(reference.score_payments)} of its {reference.score_period} period "
        + ("(score, out of sample)." if reference.score_period == "validation" else "(score).")
    )
    if n < MIN_PAYMENTS:
        st.warning(f"Fewer than {MIN_PAYMENTS:,} payments: these PSI values are mostly noise.")
    score = reference.get(SCORE)
    assert score is not None  # a reference always has one
    score_psi = psi(score.proportions, counts[SCORE][: len(score.proportions)])
    cols = st.columns(2)
    cols[0].metric("Score PSI", f"{score_psi:.3f}", band(score_psi), delta_color="off")
    rows = feature_rows(reference, counts)
    worst = rows.iloc[0] if len(rows) else None
    if worst is not None:
        cols[1].metric(
            "Largest feature PSI", f"{worst['PSI']:.3f}", str(worst["feature"]), delta_color="off"
        )
    st.altair_chart(score_figure(score, counts[SCORE]), width="stretch")
    st.markdown("**Population stability index by feature**")
    st.caption(BANDS)
    table(rows, "feature drift", colour_status=False)


def feature_rows(reference: Reference, counts: dict[str, list[int]]) -> pd.DataFrame:
    """One row per model feature counted in the range, the largest PSI first."""
    out = []
    for s in reference.series:
        if s.name == SCORE or s.name not in counts:
            continue
        live = counts[s.name][: len(s.proportions)]
        value = psi(s.proportions, live)
        out.append(
            {
                "feature": s.name,
                "PSI": round(value, 4),
                "band": band(value),
                "payments": sum(live),
                "largest move": _largest_move(s, live),
            }
        )
    frame = pd.DataFrame(out, columns=["feature", "PSI", "band", "payments", "largest move"])
    return frame.sort_values(["PSI", "feature"], ascending=[False, True], ignore_index=True)


def _largest_move(s: Series, live: list[int]) -> str:
    """The bin whose share moved most, as "bin: reference -> range"."""
    total = sum(live) or 1
    pairs = enumerate(zip(s.proportions, live, strict=True))
    _, i = max((abs(c / total - p), i) for i, (p, c) in pairs)
    label = bin_labels(s.edges)[i]
    return f"{label}: {s.proportions[i]:.1%} -> {live[i] / total:.1%}"


def score_figure(score: Series, live: list[int]) -> alt.Chart:
    """Reference and range shares of each score bin, side by side."""
    labels = bin_labels(score.edges)
    total = sum(live) or 1
    keep = [i for i, p in enumerate(score.proportions) if i < len(labels) - 1 or p or live[i]]
    frame = pd.DataFrame(
        [
            {"bin": labels[i], "order": i, "series": name, "share": share}
            for i in keep
            for name, share in (
                ("reference", score.proportions[i]),
                ("range", live[i] / total),
            )
        ]
    )
    order = [labels[i] for i in keep]
    return (
        alt.Chart(frame, title="Score distribution: the range against the reference")
        .mark_bar()
        .encode(
            x=alt.X("bin:N", sort=order, title="score bin (reference quantiles)"),
            xOffset=alt.XOffset("series:N", sort=list(SHARES)),
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="share of payments"),
            color=alt.Color(
                "series:N",
                scale=alt.Scale(domain=list(SHARES), range=list(SHARES.values())),
                title=None,
            ),
            tooltip=["bin", "series", alt.Tooltip("share:Q", format=".2%")],
        )
    )
