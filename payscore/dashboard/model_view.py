"""The Model tab: the registry, champion against challenger on the range's labelled payments,
and the review budget's trade-off (cards a day against frauds caught).

SQL is in ``model_queries.py``, metrics and budget arithmetic in the core (``core.metrics``,
``core.budget``); this module only lays them out. The drift section (``drift_view.py``)
comes last.
"""

from __future__ import annotations

import json
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from payscore.core.budget import at_threshold, daily_load, load_curve
from payscore.core.metrics import evaluate
from payscore.core.protocol import LABEL_DELAY_DAYS
from payscore.dashboard import drift_view, lookups
from payscore.dashboard import model_queries as mq
from payscore.dashboard.figures import TimeRange
from payscore.dashboard.views import fmt_rate, table

ROLES = {"champion": "#0072B2", "challenger": "#E69F00"}  # the page's colour-blind-safe pair


def time_chart(frame: pd.DataFrame, x: str, fmt: str, **encodings: Any) -> alt.Chart:
    """An Altair chart over a naive-UTC time column, labelled in 24-hour UTC whatever the
    browser's time zone (Streamlit's own charts label 22:16 as "10:16")."""
    # Marked UTC: a naive time reaches the browser as its local time, and would shift.
    frame = frame.assign(**{x: frame[x].dt.tz_localize("UTC")})
    axis = alt.Axis(format=fmt, labelOverlap=True, title=None)
    return alt.Chart(frame).encode(
        x=alt.X(f"{x}:T", scale=alt.Scale(type="utc"), axis=axis), **encodings
    )


def render(conn: Connection, tr: TimeRange) -> None:
    champion = mq.in_role(conn, "champion")
    challenger = mq.in_role(conn, "challenger")
    registry(conn, champion, challenger)
    if champion is None:
        st.info(
            "No champion in the registry: `payscore models promote VERSION` makes one "
            "(`payscore models list` shows the registered models)."
        )
    else:
        horizon = mq.labels_horizon(conn, LABEL_DELAY_DAYS)
        frame = mq.scored(
            conn, tr, champion.version, None if challenger is None else challenger.version, horizon
        )
        if len(frame) > mq.MAX_SCORED:
            frame = frame.head(mq.MAX_SCORED)
            st.caption(f"The newest {mq.MAX_SCORED:,} decisions of the range are compared.")
        compare(frame, champion, challenger)
        budget(frame, champion)
    model_info(conn)
    drift_view.render(conn, tr)


def _row(m: mq.RegisteredModel) -> dict[str, Any]:
    return {
        "version": m.version,
        "status": m.status,
        "auc_roc": m.metrics.get("auc_roc"),
        "average_precision": m.metrics.get("average_precision"),
        "card_precision_at_100": m.metrics.get("card_precision_at_100"),
        "review": m.thresholds.get("review"),
        "decline": m.thresholds.get("decline"),
        "test_period": " .. ".join(m.periods.get("test") or []),
        "trained_at": m.trained_at,
        "trained_by": m.trained_by,
        "status_at": m.status_at,
    }


def registry(
    conn: Connection, champion: mq.RegisteredModel | None, challenger: mq.RegisteredModel | None
) -> None:
    st.subheader("Model registry")
    rows = [_row(m) for m in (champion, challenger) if m is not None]
    rows += [_row(m) for m in mq.recent_models(conn)]
    if not rows:
        st.caption("No model registered yet (`payscore train` registers each model it saves).")
        return
    st.caption(
        "Champion (decides), challenger (scored beside it, never deciding), then the latest "
        f"other models (up to {mq.RECENT_MODELS}); metrics are each model's own test period."
    )
    table(pd.DataFrame(rows), "model registry", colour_status=False)


def _days(frame: pd.DataFrame) -> np.ndarray:
    return frame["event_time"].dt.floor("D").to_numpy()


def compare(
    frame: pd.DataFrame, champion: mq.RegisteredModel, challenger: mq.RegisteredModel | None
) -> None:
    """The handbook's metrics of both models on the same labelled payments, and the review
    load each would cause at its own thresholds, per day."""
    st.subheader("Champion and challenger on labelled payments")
    if challenger is None:
        st.info(
            "No challenger set: `payscore models challenger VERSION` shadow-scores one beside "
            f"the champion ({champion.version}). The champion alone is shown."
        )
    labelled = frame[frame["labelled"] == 1]
    if challenger is not None:  # the same payments for both: a failed shadow score leaves one
        labelled = labelled[labelled["challenger_score"].notna()]
    frauds = int(labelled["is_fraud"].sum())
    pair = "both models scored" if challenger is not None else "the champion decided"
    st.caption(
        f"{len(labelled):,} labelled payment(s) of the range that {pair} ({frauds:,} fraud); "
        f"{len(frame) - len(labelled):,} more still wait for their label. A payment without "
        f"a chargeback counts as genuine once {LABEL_DELAY_DAYS} days have passed (the "
        "latest stored event time is the clock), as training does."
    )
    models = [("champion", champion, "score")]
    if challenger is not None:
        models.append(("challenger", challenger, "challenger_score"))
    rows = []
    for role, model, column in models:
        row: dict[str, Any] = {"role": role, "version": model.version}
        try:
            row.update(
                evaluate(
                    labelled["is_fraud"].to_numpy(),
                    labelled[column].to_numpy(),
                    _days(labelled),
                    labelled["customer_id"].to_numpy(),
                )
            )
        except ValueError:
            pass  # one class only: said below, the row keeps its version
        rows.append(row)
    if labelled.empty or labelled["is_fraud"].nunique() < 2:
        st.warning(
            "The metrics need labelled payments of both kinds (fraudulent and genuine) in the "
            "range: choose a longer range, or wait for labels."
        )
    else:
        metric_rows(rows)
    table(pd.DataFrame(rows), "model comparison", colour_status=False)
    load = review_load(frame, models)
    if load.empty:
        return
    st.markdown("**Review load at each model's own thresholds** (cards a day, all payments)")
    chart = time_chart(
        load,
        "day",
        "%Y-%m-%d",
        y=alt.Y("cards:Q", title="cards to review"),
        color=alt.Color(
            "model:N",
            scale=alt.Scale(domain=list(ROLES), range=list(ROLES.values())),
            legend=alt.Legend(orient="bottom", title=None),
        ),
        tooltip=["model:N", alt.Tooltip("day:T", format="%Y-%m-%d"), "cards:Q"],
    )
    st.altair_chart(chart.mark_line(point=True), width="stretch")


def metric_rows(rows: list[dict[str, Any]]) -> None:
    """One row of metrics per model; the challenger's shows its difference to the champion."""
    names = {"auc_roc": "AUC ROC", "average_precision": "AP", "card_precision_at_100": "CP@100"}
    for row in rows:
        if any(key not in row for key in names):  # not computable (a score missing): the
            continue  # table below still lists the model
        cols = st.columns(len(names))
        for col, (key, name) in zip(cols, names.items(), strict=True):
            diff = row[key] - rows[0][key] if row is not rows[0] and key in rows[0] else None
            col.metric(
                f"{row['role'].title()} {name}",
                f"{row[key]:.4f}",
                delta=None if diff is None else f"{diff:+.4f} vs champion",
                help=f"{row['version']} on the labelled payments above",
            )


def review_load(frame: pd.DataFrame, models: list[tuple[str, Any, str]]) -> pd.DataFrame:
    """Cards a day in each model's REVIEW band, over every payment of the frame."""
    parts = []
    for role, model, column in models:
        review, decline = model.thresholds.get("review"), model.thresholds.get("decline")
        if review is None or decline is None or frame.empty:
            continue
        days = _days(frame)
        per_day = daily_load(
            days,
            frame["customer_id"].to_numpy(),
            frame[column].to_numpy(),
            float(review),
            float(decline),
        )
        parts.append(pd.DataFrame({"day": per_day.index, "cards": per_day.values, "model": role}))
    if not parts:
        return pd.DataFrame(columns=["day", "cards", "model"])
    out = pd.concat(parts, ignore_index=True)
    out["day"] = pd.to_datetime(out["day"])
    return out


def budget(frame: pd.DataFrame, champion: mq.RegisteredModel) -> None:
    """The champion's trade-off on the labelled payments: cards a day against the share of
    frauds caught as its review threshold moves, where it sits, and what a change would do."""
    st.subheader("Review budget: cards a day against frauds caught")
    labelled = frame[frame["labelled"] == 1]
    review, decline = champion.thresholds.get("review"), champion.thresholds.get("decline")
    if labelled.empty or not labelled["is_fraud"].any() or review is None or decline is None:
        st.info("The curve needs labelled frauds in the range and the champion's thresholds.")
        return
    args = (
        _days(labelled),
        labelled["customer_id"].to_numpy(),
        labelled["is_fraud"].to_numpy(),
        labelled["score"].to_numpy(),
    )
    curve = load_curve(*args, float(decline))
    cols = st.columns(3)
    wanted = cols[0].number_input(
        "Review threshold",
        min_value=0.0,
        max_value=float(decline),
        value=min(float(review), float(decline)),
        step=0.001,
        format="%.4f",
        key="budget_review",
        help=f"Scores from here to the decline threshold ({decline:.4f}) go to review",
    )
    now_load, now_caught = at_threshold(*args, float(review), float(decline))
    new_load, new_caught = at_threshold(*args, float(wanted), float(decline))
    cols[1].metric(
        "Cards a day to review",
        f"{new_load:,.1f}",
        delta=f"{new_load - now_load:+,.1f} vs the champion's {now_load:,.1f}",
        delta_color="off",
        delta_arrow="off",
    )
    cols[2].metric(
        "Frauds caught",
        fmt_rate(new_caught),
        delta=f"champion's threshold: {fmt_rate(now_caught)}",
        delta_color="off",
        delta_arrow="off",
    )
    points = pd.DataFrame(
        {
            "cards_per_day": [now_load, new_load],
            "fraud_share_caught": [now_caught, new_caught],
            "point": ["champion's threshold", "your threshold"],
        }
    )
    st.altair_chart(budget_figure(curve, points), width="stretch")
    st.caption(
        f"Over {len(labelled):,} labelled payments on {len(np.unique(args[0]))} day(s); a "
        "card with payments in the review band on a day is one card to review; a fraud is "
        "caught when it scores at or above the review threshold (reviewed or declined)."
    )


def budget_figure(curve: pd.DataFrame, points: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
    line = (
        alt.Chart(curve)
        .mark_line(color=ROLES["champion"])
        .encode(
            x=alt.X("cards_per_day:Q", title="cards a day to review"),
            y=alt.Y(
                "fraud_share_caught:Q", title="share of frauds caught", axis=alt.Axis(format="%")
            ),
            tooltip=[
                alt.Tooltip("review_threshold:Q", format=".4f"),
                alt.Tooltip("cards_per_day:Q", format=",.1f"),
                alt.Tooltip("fraud_share_caught:Q", format=".1%"),
            ],
        )
    )
    marks = (
        alt.Chart(points)
        .mark_point(size=120, filled=True)
        .encode(
            x="cards_per_day:Q",
            y="fraud_share_caught:Q",
            shape=alt.Shape("point:N", legend=alt.Legend(orient="bottom", title=None)),
            color=alt.Color(
                "point:N",
                scale=alt.Scale(range=["#0072B2", "#D55E00"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
        )
    )
    return alt.layer(line, marks)


def model_info(conn: Connection) -> None:
    """The model the consumer last recorded as in service (``model_versions``)."""
    st.subheader("Model in service")
    model = lookups.latest_model(conn)
    if model is None:
        st.info("No model version recorded yet (the consumer records one when it starts).")
        return
    meta = model["metadata"]
    cols = st.columns(3)
    cols[0].metric("Version", model["version"])
    cols[1].metric("Trained at (UTC)", f"{model['trained_at']:%Y-%m-%d %H:%M}")
    cols[2].metric("Activated at (UTC)", f"{model['activated_at']:%Y-%m-%d %H:%M}")
    metrics = meta.get("metrics") or {}
    thresholds = meta.get("thresholds") or {}
    left, right = st.columns(2)
    with left:
        st.markdown("**Metrics**")
        frame = pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})
        table(frame, "model metrics", colour_status=False)
    with right:
        st.markdown("**Thresholds**")
        frame = pd.DataFrame({"threshold": list(thresholds), "score": list(thresholds.values())})
        table(frame, "model thresholds", colour_status=False)
    other = {k: v for k, v in meta.items() if k not in {"metrics", "thresholds"}}
    if other:
        with st.expander("All metadata"):
            st.code(json.dumps(other, indent=2, default=str), language="json")
