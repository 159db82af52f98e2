"""The payscore monitoring page, run by ``payscore dashboard`` (``streamlit run`` on this file).

Settings come from the environment (PAYSCORE_*), like every payscore process. Everything is
read through a read-only engine; only the analyst's review label uses a separate write engine,
so the page works with a read-only database user for all but labelling. Labelling is off unless
``dashboard_labelling`` is set, and then needs a signed-in analyst (``auth.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, time, timedelta

import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from payscore.config import Settings, load_settings
from payscore.dashboard import auth, gcfreeze, model_view, rules_edit, rules_view, views
from payscore.dashboard import queries as q
from payscore.dashboard.figures import TimeRange, utc_now
from payscore.errors import InputError, PayscoreError
from payscore.store.engine import database_error, driver_message, make_engine
from payscore.store.labels import record_analyst_label

gcfreeze.once()  # after the imports: what they made is skipped by every collection

REFRESH_ENV = "PAYSCORE_DASHBOARD_REFRESH"
RANGES: dict[str, int | None] = {
    "Last 15 minutes": 15 * 60,
    "Last hour": 3600,
    "Last day": 86400,
    "Last 7 days": 7 * 86400,
    "All time": None,
    "Custom": -1,
}
REFRESH_CHOICES = [0, 5, 10, 30, 60, 300]


@st.cache_resource(show_spinner=False)
def _engine(url_key: str, read_only: bool) -> Engine:
    """One pooled engine per database and mode for the whole Streamlit server."""
    return make_engine(_settings(), read_only=read_only)


def _settings() -> Settings:
    return load_settings().settings


def _default_refresh() -> int:
    raw = os.environ.get(REFRESH_ENV, "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        return 0
    return value if 0 <= value <= 3600 else 0


def _sidebar() -> tuple[str, int]:
    st.sidebar.header("payscore")
    choice = st.sidebar.selectbox("Time range", list(RANGES), index=1, key="range")
    if choice == "Custom":
        today = utc_now().date()
        st.sidebar.date_input("From (UTC)", today - timedelta(days=1), key="custom_start_day")
        st.sidebar.time_input("at", time(0, 0), key="custom_start_time")
        st.sidebar.date_input("To (UTC)", today, key="custom_end_day")
        st.sidebar.time_input("at ", time(23, 59), key="custom_end_time")
    default = _default_refresh()
    choices = sorted({*REFRESH_CHOICES, default})
    refresh = st.sidebar.selectbox(
        "Auto-refresh",
        choices,
        index=choices.index(default),
        format_func=lambda s: "Off" if s == 0 else f"every {s} s",
        key="refresh",
    )
    return str(choice or "Last hour"), int(refresh or 0)


def _time_range(choice: str) -> TimeRange | None:
    seconds = RANGES[choice]
    if seconds != -1:
        return TimeRange.last(seconds)
    state = st.session_state
    start = datetime.combine(state["custom_start_day"], state["custom_start_time"])
    end = datetime.combine(state["custom_end_day"], state["custom_end_time"])
    if end <= start:
        st.error("The custom range must end after it starts.")
        return None
    return TimeRange(start, end)


def _label(tx: str, is_fraud: bool, note: str | None) -> str:
    """Store the signed-in analyst's verdict; checked again here, not only by hiding buttons."""
    settings = _settings()
    analyst = auth.signed_in() if auth.labelling_off_reason(settings) is None else None
    if analyst is None:
        raise InputError("sign in before labelling")
    engine = _engine(settings.database_url, False)
    when = record_analyst_label(engine, tx, is_fraud, analyst, note)
    verdict = "fraud" if is_fraud else "legitimate"
    return f"{tx} marked {verdict} by {analyst} at {when:%Y-%m-%d %H:%M:%S} UTC."


def _policy_editor() -> rules_edit.Editor:
    """Rule and list changes: each checks the settings and the sign-in again itself, and
    writes through the write engine (made on the first change)."""
    return rules_edit.Editor(
        _settings, lambda: _engine(_settings().database_url, False), auth.signed_in
    )


def _schema_problem(engine: Engine) -> str | None:
    """A friendly explanation when the database cannot be read, else None."""
    try:
        with engine.connect() as conn:
            missing = q.missing_tables(conn)
    except SQLAlchemyError as e:
        if "unable to open database file" in driver_message(e):
            return (
                "The database file does not exist yet. Create it with `payscore initdb` "
                "(and start `payscore consume`), or point `--database-url` at your database."
            )
        # No URL here: the page renders markdown (a masked password's asterisks), and the
        # read-only engine's URL is SQLite's URI form, not what the user configured.
        message = str(database_error(e))
        return f"{message[:1].upper()}{message[1:]}."
    if len(missing) == len(q.DASHBOARD_TABLES):
        return "The database has no payscore schema yet. Run `payscore initdb` first."
    if missing:
        return (
            "The database lacks tables the dashboard reads: "
            + ", ".join(missing)
            + ". Run `payscore initdb` (it adds missing tables and keeps the data)."
        )
    return None


TABS = ("Overview", "Decisions", "Risk", "Review queue", "Customer", "Model", "Rules")


def _live(choice: str, analyst: str | None, labelling_off: str | None) -> None:
    """Everything that follows the clock; re-run alone by the fragment timer.

    Only the open tab is computed (the tabs rerun the page when switched), and each tab with
    inputs is a fragment of its own: typing a customer id re-runs the customer's queries
    only, not every figure of the range."""
    if _time_range(choice) is None:
        return
    tabs = st.tabs(TABS, key="tab", on_change="rerun")
    views_of = {
        "Overview": lambda: _tab(choice, views.overview),
        "Decisions": lambda: _tab_fragment(choice, views.decisions),
        "Risk": lambda: _tab(choice, views.risk),
        "Review queue": lambda: _tab_fragment(
            choice,
            lambda conn, tr: views.review_queue(conn, _label, analyst, labelling_off),
        ),
        "Customer": lambda: _tab_fragment(choice, lambda conn, tr: views.customer(conn)),
        "Model": lambda: _tab_fragment(choice, model_view.render),
        "Rules": lambda: _tab_fragment(
            choice, lambda conn, tr: rules_view.rules_tab(conn, _policy_editor(), analyst)
        ),
    }
    for name, tab in zip(TABS, tabs, strict=True):
        if tab.open:
            with tab:
                views_of[name]()


def _tab(choice: str, view: Callable[[Connection, TimeRange], None]) -> None:
    """One tab's view on its own read-only connection."""
    tr = _time_range(choice)
    if tr is None:
        return
    try:
        with _engine(_settings().database_url, True).connect() as conn:
            view(conn, tr)
        # Per tab: a tab re-run alone states its own time.
        st.caption(f"Updated {utc_now():%Y-%m-%d %H:%M:%S} UTC; decision times are UTC.")
    except SQLAlchemyError as e:
        st.error(f"The database query failed: {database_error(e)}")


@st.fragment
def _tab_fragment(choice: str, view: Callable[[Connection, TimeRange], None]) -> None:
    """A tab with inputs: they re-run this tab alone (its range read afresh), not the page."""
    _tab(choice, view)


def main() -> None:
    st.set_page_config(page_title="payscore", page_icon=":credit_card:", layout="wide")
    st.title("payscore - payment fraud monitoring")
    try:
        settings = _settings()
    except PayscoreError as e:
        st.error(f"Configuration problem: {e}")
        return
    choice, refresh = _sidebar()
    labelling_off = auth.labelling_off_reason(settings)
    analyst = auth.sign_in(settings) if labelling_off is None else None
    problem = _schema_problem(_engine(settings.database_url, True))
    if problem:
        st.warning(problem)
        return
    live = st.fragment(run_every=refresh or None)(_live)
    live(choice, analyst, labelling_off)


main()
