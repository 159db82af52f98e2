"""The page's sections: each takes an open read-only connection and renders one part.

No SQL here (that is queries.py and lookups.py) and no thresholds or business rules (those
live in the core); this module only formats what the queries return.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from payscore.dashboard import lookups, reasons
from payscore.dashboard import queries as q
from payscore.dashboard.figures import (
    SERIES_COLOURS,
    STATUS_MARKS,
    Headline,
    TimeRange,
    bin_name,
    time_axis_format,
)
from payscore.dashboard.inline import (
    Figure,
    activity_svg,
    headline_html,
    histogram_svg,
    scatter_svg,
)

ALERTS = 100  # velocity alerts shown
HISTORY = 100  # a customer's latest payments shown (the list says when it is capped)


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def fmt_ms(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:,.1f} ms"


def fmt_duration(seconds: float) -> str:
    """ "5.7 s", "12 min", "3.5 h", "2.0 days"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 86400 else f"{seconds / 86400:.1f} days"


def fmt_throughput(per_second: float | None) -> str:
    """Per second when busy, per minute when quiet: both read without a row of zeros."""
    if per_second is None:
        return "-"
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second * 60:,.1f}/min"


# How each column the page shows is formatted: money with 2 decimals, times 24-hour UTC.
_TIME = "YYYY-MM-DD HH:mm:ss"
COLUMN_FORMATS = {
    "amount": st.column_config.NumberColumn(format="%.2f"),
    "mean_amount": st.column_config.NumberColumn(format="%.2f"),
    "score": st.column_config.NumberColumn(format="%.4f"),
    "max_score": st.column_config.NumberColumn(format="%.4f"),
    "mean_score": st.column_config.NumberColumn(format="%.4f"),
    "scored_at": st.column_config.DatetimeColumn(format=_TIME + ".SSS"),
    "event_time": st.column_config.DatetimeColumn(format=_TIME),
    "recorded_at": st.column_config.DatetimeColumn(format=_TIME),
    "known_at": st.column_config.DatetimeColumn(format=_TIME),
    "explanation": reasons.COLUMN,
}


def table(
    frame: pd.DataFrame, name: str, *, colour_status: bool = True, cap: int | None = None
) -> None:
    """Show a table with status colouring and a CSV download of exactly what is shown.

    With ``cap``, ``frame`` may hold one row more than the cap (fetched to tell): then only
    ``cap`` rows are shown and the caption says the list is capped."""
    if cap is not None and len(frame) > cap:
        frame = frame.head(cap)
        st.caption(
            f"{cap:,} row(s) shown, capped: more {name} match. Narrow the time range or the "
            "filters to see the rest."
        )
    else:
        st.caption(f"{len(frame):,} row(s) shown" if len(frame) else "No rows.")
    shown = frame
    if colour_status and "status" in frame and not frame.empty:
        # Only on screen: the CSV keeps the plain status.
        shown = frame.copy()
        shown.insert(
            frame.columns.get_loc("status"), "mark", frame["status"].map(STATUS_MARKS).fillna("")
        )
    config = {c: COLUMN_FORMATS[c] for c in frame.columns if c in COLUMN_FORMATS}
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config)
    st.download_button(
        f"Download {name} (CSV)",
        frame.to_csv(index=False).encode("utf-8"),
        file_name=f"payscore-{name.replace(' ', '-')}.csv",
        mime="text/csv",
        key=f"csv_{name}",
        on_click="ignore",
    )


def fmt_backlog(n: int) -> str:
    return f"{n:,}+" if n >= lookups.BACKLOG_CAP else f"{n:,}"


def overview(conn: Connection, tr: TimeRange) -> None:
    """The overview tab: the headline figures, then the activity chart and score histogram,
    drawn as HTML and inline SVG (``inline``: a first load does not wait for a chart library).

    Every figure, the fraud count too, comes from the per-minute and per-hour rollup on a
    range of 5 minutes or more: 1-4 ms for the fraud count at 10 million decisions, so it no
    longer runs on a connection of its own while the rest is drawn."""
    h = q.headline(conn, tr)
    _markup(headline_html(headline_figures(h, lookups.review_backlog(conn))))
    charts(conn, tr, h.decided)


def _markup(html: str) -> None:
    """Show ``inline``'s markup. Through Markdown, which keeps inline SVG: ``st.html``
    sanitizes it with an HTML-only profile and drops every SVG element."""
    st.markdown(html, unsafe_allow_html=True)


def headline_figures(h: Headline, backlog: int) -> list[Figure]:
    """The ten figures at the top, in two rows of five."""
    per_second = h.throughput_per_second
    active = fmt_duration(h.active_seconds) if per_second is not None else None
    sample = f"Over the latest {h.latency_sample:,} decisions (received -> scored)"
    return [
        Figure("Payments decided", fmt_count(h.decided)),
        # The rate under the count, not beside it: "19,620 (98.10%)" did not fit a column.
        *(Figure(s.title(), fmt_count(h.counts[s]), fmt_rate(h.rate(s))) for s in q.STATUSES),
        Figure("Fraud rate", fmt_rate(h.fraud_rate), help="Labelled fraud among decided"),
        Figure(
            "Throughput",
            fmt_throughput(per_second),
            f"over {active} active" if active else None,
            "Decisions over the active period: from the first to the last decision in the "
            "range, not the whole range",
        ),
        Figure("Latency median", fmt_ms(h.latency_median_ms), help=sample),
        Figure("Latency p99", fmt_ms(h.latency_p99_ms), help=sample),
        Figure("Dead letters", fmt_count(h.dead_letters)),
        Figure("Review backlog", fmt_backlog(backlog), help="REVIEW decisions with no label"),
    ]


def charts(conn: Connection, tr: TimeRange, decided: int) -> None:
    """The activity chart and the score histogram; ``decided`` is the headline's count."""
    left, right = st.columns(2)
    seconds, activity = q.activity_chart(conn, tr, decided)
    with left:
        st.subheader(f"Payments and decisions per {bin_name(seconds)}")
        if activity.empty:
            st.caption("No decisions in this range.")
        else:
            _markup(activity_figure(activity, seconds))
            partial = (
                " The first and last bins hold part of a period only (from the first decision, "
                "to the latest): their points are hollow and the line to them dashed."
                if len(activity) > 1
                else ""
            )
            st.caption(
                f"Times in UTC; the bin ({bin_name(seconds)}) is chosen from the span of the "
                f"decisions in the range.{partial} Point at a bin for its figures."
            )
    with right:
        st.subheader("Score distribution")
        hist = q.score_histogram(conn, tr)
        _markup(histogram_svg(hist["score_from"].tolist(), hist["payments"].tolist()))


def activity_figure(activity: pd.DataFrame, seconds: int) -> str:
    """The activity chart (``inline.activity_svg``) of one row per bin: its series counted,
    the time axis labelled for the bin and the span."""
    buckets = list(activity["bucket"].dt.to_pydatetime())
    span = (buckets[-1] - buckets[0]).total_seconds()
    series = {name: activity[name].astype(int).tolist() for name in SERIES_COLOURS}
    return activity_svg(buckets, series, time_axis_format(seconds, span))


def decisions(conn: Connection, tr: TimeRange) -> None:
    st.subheader("Latest decisions")
    cols = st.columns([1, 1, 1, 1, 1])
    status = cols[0].selectbox("Status", ["All", *q.STATUSES], key="f_status")
    customer = cols[1].text_input("Customer id", key="f_customer", max_chars=64)
    terminal = cols[2].text_input("Terminal id", key="f_terminal", max_chars=64)
    reason = cols[3].text_input("Reason contains", key="f_reason", max_chars=64)
    limit = cols[4].number_input("Rows", 10, q.MAX_ROWS, 200, step=50, key="f_limit")
    flt = q.DecisionFilter(
        status=None if status == "All" else status,
        customer_id=customer.strip() or None,
        terminal_id=terminal.strip() or None,
        reason=reason.strip() or None,
    )
    shown = int(limit)
    table(q.latest_decisions(conn, tr, flt, shown + 1), "latest decisions", cap=shown)


def risk(conn: Connection, tr: TimeRange) -> None:
    st.subheader("Velocity alerts")
    table(q.velocity_alerts(conn, tr, ALERTS + 1), "velocity alerts", cap=ALERTS)
    left, right = st.columns(2)
    with left:
        st.subheader("Riskiest customers")
        table(q.riskiest(conn, "customer_id", tr), "riskiest customers", colour_status=False)
    with right:
        st.subheader("Riskiest terminals")
        table(q.riskiest(conn, "terminal_id", tr), "riskiest terminals", colour_status=False)


def customer(conn: Connection) -> None:
    st.subheader("Customer risk profile")
    wanted = st.text_input("Customer id", key="customer_query", max_chars=64).strip()
    if not wanted:
        st.caption("Enter a customer id to see their history and usual behaviour.")
        return
    profile = lookups.customer_profile(conn, wanted)
    if profile is None:
        st.info(f"No decisions for customer {wanted!r}.")
        return
    cols = st.columns(5)
    cols[0].metric("Payments", fmt_count(profile.payments))
    cols[1].metric("Mean amount", f"{profile.mean_amount:,.2f}", help="All of their payments")
    cols[2].metric("Std of amount", f"{profile.std_amount:,.2f}")
    cols[3].metric(
        "Last 24 h",
        fmt_count(profile.last_day),
        delta=f"{profile.last_day - profile.usual_per_day:+.1f} vs usual/day",
        delta_color="inverse",
        help=f"Usual: {profile.usual_per_day:.2f} payments a day; windows end at their latest "
        "payment (event time)",
    )
    cols[4].metric("Last hour", fmt_count(profile.last_hour), help="Payments per hour, recently")
    st.caption(
        f"First payment {profile.first_event:%Y-%m-%d %H:%M}, latest "
        f"{profile.last_event:%Y-%m-%d %H:%M} (event time, UTC). Statuses: "
        + ", ".join(f"{k} {v}" for k, v in sorted(profile.statuses.items()))
    )
    history = lookups.customer_history(conn, wanted, HISTORY + 1)
    plotted = history.head(HISTORY)
    _markup(
        scatter_svg(
            list(plotted["event_time"].dt.to_pydatetime()),
            plotted["amount"].astype(float).tolist(),
            plotted["status"].tolist(),
        )
    )
    table(history, "customer history", cap=HISTORY)


def review_queue(
    conn: Connection,
    label: Callable[[str, bool, str | None], str],
    analyst: str | None,
    labelling_off: str | None,
    limit: int = 100,
) -> None:
    """The unlabelled REVIEW decisions, oldest first; verdict buttons for a signed-in analyst
    only; then one payment's label history."""
    st.subheader("Review queue")
    frame = lookups.review_queue(conn, limit)
    backlog = lookups.review_backlog(conn)
    if backlog > limit:
        st.caption(f"Showing the oldest {limit:,} of {fmt_backlog(backlog)} payments waiting.")
    else:
        st.caption(f"{backlog:,} payment(s) waiting; oldest first.")
    message = st.session_state.pop("review_message", None)
    if message:
        (st.success if message[0] == "ok" else st.error)(message[1])
    if frame.empty:
        st.info("Nothing to review.")
    elif analyst is None:
        st.info(labelling_off or "Sign in (sidebar) to label review payments.")
    else:
        _verdict_controls(frame, label, analyst)
    reasons.show_picked(frame, st.session_state.get("review_tx"))
    if not frame.empty:
        table(frame, "review queue")
    label_history(conn)


def _verdict_controls(
    frame: pd.DataFrame, label: Callable[[str, bool, str | None], str], analyst: str
) -> None:
    rows = {r.transaction_id: r for r in frame.itertuples()}

    def describe(tx: str) -> str:
        # Short enough to show whole in the picker: "tx · cust · 12.50 EUR · 0.6123".
        r = rows[tx]
        return f"{tx} · {r.customer_id} · {r.amount:,.2f} {r.currency} · {r.score:.4f}"

    cols = st.columns([3, 2])
    cols[0].selectbox("Payment", list(rows), format_func=describe, key="review_tx")
    cols[1].text_input("Note (optional)", key="review_note", max_chars=500)

    def submit(is_fraud: bool) -> None:
        tx = st.session_state.get("review_tx")
        note = st.session_state.get("review_note") or None
        if not tx:
            return
        try:
            st.session_state["review_message"] = ("ok", label(tx, is_fraud, note))
            st.session_state["review_note"] = ""
            st.session_state["history_tx"] = tx
        except Exception as e:  # noqa: BLE001 - shown to the analyst, never a trace
            st.session_state["review_message"] = ("error", str(e))

    st.caption(f"Your verdict is recorded as **{analyst}**.")
    buttons = st.columns(6)
    buttons[0].button("Mark fraud", key="mark_fraud", on_click=submit, args=(True,))
    buttons[1].button("Mark legitimate", key="mark_legit", on_click=submit, args=(False,))


def label_history(conn: Connection) -> None:
    """Every label a payment received (chargebacks and analysts), and the one that counts."""
    st.subheader("Label history")
    wanted = st.text_input("Transaction id", key="history_tx", max_chars=64).strip()
    if not wanted:
        st.caption(
            "Enter a transaction id to see every label it received. An analyst's verdict "
            "counts over chargebacks from the labels topic; among those, the latest counts."
        )
        return
    current = lookups.counting_label(conn, wanted)
    if current is None:
        st.info(f"No label for transaction {wanted!r}.")
        return
    who = f" by {current['labelled_by']}" if current["labelled_by"] else ""
    st.markdown(
        f"Counts: **{current['verdict']}** ({current['source']}{who}, known "
        f"{current['known_at']:%Y-%m-%d %H:%M:%S} UTC)"
    )
    table(lookups.label_history(conn, wanted), "label history", colour_status=False)
