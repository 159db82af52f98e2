"""The Rules tab: the live rules, lists, policy version and audit trail, readable by everyone;
the changes of ``rules_edit.py`` for a signed-in analyst when ``dashboard_policy_editing`` is on.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from payscore.core.rules import PAYMENT_FIELDS
from payscore.dashboard.rules_edit import (
    MAX_WHATIF_DAYS,
    WHATIF_DAYS,
    Editor,
    Pending,
    editing_off_reason,
)
from payscore.dashboard.views import table
from payscore.errors import PayscoreError
from payscore.livepolicy import REPORT_COLUMNS, report_rows, stock_rules
from payscore.store.policy import AuditEntry, PolicyStore, StoredRule

AUDIT_SHOWN = 50  # newest policy changes shown
VALUES_SHOWN = 200  # values of one list shown
PENDING, MESSAGE = "rules_pending", "rules_message"
NEW_LIST = "(an existing list)"
EXAMPLE = """code = "BIG_EUR"
kind = "amount_per_currency"
action = "REVIEW"
description = "large euro payments"
[params]
limits = { EUR = 5000 }"""


def rules_tab(conn: Connection, editor: Editor, analyst: str | None) -> None:
    """Everything stored about the live policy; the change forms when allowed."""
    store = PolicyStore(conn.engine)  # the page's read-only engine
    try:
        version, rules, lists = store.version(), store.rules(), store.list_summaries()
    except PayscoreError as e:
        st.warning(
            f"The stored rules cannot be read ({e}). A database made by an older payscore "
            "gets the rules tables from `payscore initdb`."
        )
        return
    st.subheader("Rules")
    st.caption(
        f"Policy version **{version}**. A running `payscore consume` applies a change at a "
        "batch boundary within `policy_poll_seconds`. Stock rules come from settings."
    )
    message = st.session_state.pop(MESSAGE, None)
    if message:
        (st.success if message[0] == "ok" else st.error)(message[1])
    table(rules_frame(rules, editor), "rules", colour_status=False)
    off = editing_off_reason(editor.settings())
    if off is not None:
        st.info(off)
    elif analyst is None:
        st.info("Sign in (sidebar) to change rules and lists.")
    else:
        st.caption(f"Your changes are recorded as **{analyst}**.")
        _rule_forms(editor, rules)
    st.subheader("Lists")
    _lists(store, lists)
    if off is None and analyst is not None:
        _list_form(editor, [name for name, _, _ in lists])
    _history(store, [r.code for r in rules] + [name for name, _, _ in lists])


def _history(store: PolicyStore, subjects: list[str]) -> None:
    """The audit trail, newest first: every change, or one rule's or list's (rules history)."""
    st.subheader("Recent changes")
    everything = "(every rule and list)"
    subject = st.selectbox("Changes to", [everything, *subjects], key="rules_history_of")
    try:
        audit = store.history(None if subject == everything else subject, AUDIT_SHOWN + 1)
    except PayscoreError as e:
        st.error(str(e))
        return
    if len(audit) > AUDIT_SHOWN:
        st.caption(f"The newest {AUDIT_SHOWN}; `payscore rules history` shows older ones.")
    table(audit_frame(audit[:AUDIT_SHOWN]), "policy changes", colour_status=False)


def rules_frame(rules: list[StoredRule], editor: Editor) -> pd.DataFrame:
    """Stored rules, then the stock rules from settings (always enabled, no id)."""
    rows: list[dict[str, Any]] = [
        {
            "id": str(r.id),
            "reason code": r.code,
            "description": r.description,
            "kind": r.kind,
            "action": r.action,
            "enabled": r.enabled,
            "params": json.dumps(r.params, sort_keys=True),
            "source": f"stored, version {r.version}",
        }
        for r in rules
    ]
    try:
        stock = stock_rules(editor.settings())
    except PayscoreError:  # settings the page cannot build rules from: shown elsewhere
        stock = ()
    rows += [
        {
            "id": "",
            "reason code": r.code,
            "description": "stock rule",
            "kind": r.kind,
            "action": r.action,
            "enabled": True,
            "params": json.dumps(dict(r.params), sort_keys=True),
            "source": "settings",
        }
        for r in stock
    ]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["reason code"])


def audit_frame(entries: list[AuditEntry]) -> pd.DataFrame:
    def shown(value: Any) -> str:
        return "" if value is None else json.dumps(value, sort_keys=True)

    return pd.DataFrame(
        [
            {
                "version": e.version,
                "recorded_at": e.at,
                "who": e.actor,
                "change": e.change,
                "subject": e.subject,
                "why": e.reason,
                "before": shown(e.before),
                "after": shown(e.after),
            }
            for e in entries
        ],
        columns=["version", "recorded_at", "who", "change", "subject", "why", "before", "after"],
    )


def whatif_frame(pending: Pending) -> pd.DataFrame:
    """The report as ``payscore rules test`` prints it: per day, then the total."""
    rows = report_rows(pending.report)
    return pd.DataFrame(
        [cells for _, cells in rows],
        index=pd.Index([label for label, _ in rows], name="day"),
        columns=list(REPORT_COLUMNS),
    )


def _lists(store: PolicyStore, lists: list[tuple[str, str, int]]) -> None:
    if not lists:
        st.caption("No lists yet.")
        return
    frame = pd.DataFrame(lists, columns=["list", "field", "values"])
    st.dataframe(frame, hide_index=True, width="stretch")
    name = st.selectbox("Show the values of", [n for n, _, _ in lists], key="rules_list_shown")
    try:
        values = sorted(store.stored_list(str(name)).values)
    except PayscoreError as e:
        st.error(str(e))
        return
    if len(values) > VALUES_SHOWN:
        st.caption(
            f"The first {VALUES_SHOWN:,} of {len(values):,} values (sorted), capped: "
            f"`payscore lists show {name}` prints every one."
        )
    else:
        st.caption(f"{len(values):,} value(s).")
    st.dataframe(pd.DataFrame({"value": values[:VALUES_SHOWN]}), hide_index=True)


def _done(action: Any, *args: Any) -> None:
    """Run a change from a button's callback (before the tab is drawn again, so the tables
    show it); its outcome is shown at the top of the tab."""
    try:
        st.session_state[MESSAGE] = ("ok", action(*args))
    except PayscoreError as e:
        st.session_state[MESSAGE] = ("error", str(e))


def _value(key: str) -> str:
    return str(st.session_state.get(key) or "")


def _days() -> int:
    return int(st.session_state.get("rules_days") or WHATIF_DAYS)


def _rule_forms(editor: Editor, rules: list[StoredRule]) -> None:
    st.number_input(
        "What-if over the last N days (before a rule is added or enabled)",
        1,
        MAX_WHATIF_DAYS,
        WHATIF_DAYS,
        key="rules_days",
    )
    with st.form("rules_add", border=True):
        st.markdown("**Add a rule** (TOML or JSON, as `payscore rules add --file` reads)")
        fmt = st.radio("Format", ["TOML", "JSON"], horizontal=True, key="rules_fmt")
        text = st.text_area("Rule", placeholder=EXAMPLE, height=180, key="rules_text")
        reason = st.text_input("Why (for the audit trail)", max_chars=1024, key="rules_reason")
        if st.form_submit_button("Try on history"):
            _try(editor.try_rule, text or "", str(fmt).lower(), reason, _days())
    if rules:
        _toggle_form(editor, rules)
    pending = st.session_state.get(PENDING)
    if isinstance(pending, Pending):
        _pending(editor, pending)


def _toggle_form(editor: Editor, rules: list[StoredRule]) -> None:
    by_code = {r.code: r for r in rules}
    with st.container(border=True):
        st.markdown("**Disable or enable a stored rule** (enabling is tried on history first)")
        cols = st.columns([2, 3, 1])
        code = cols[0].selectbox(
            "Stored rule",
            list(by_code),
            format_func=lambda c: f"{c} ({'enabled' if by_code[c].enabled else 'disabled'})",
            key="rules_toggle_code",
        )
        reason = cols[1].text_input("Why", max_chars=1024, key="rules_toggle_reason")
        chosen = by_code[str(code)]
        if chosen.enabled:
            cols[2].button(
                "Disable",
                key="rules_disable",
                on_click=lambda: _done(
                    editor.disable, _value("rules_toggle_code"), _value("rules_toggle_reason")
                ),
            )
        elif cols[2].button("Try enabling on history", key="rules_try_enable"):
            _try(editor.try_enable, chosen.code, reason, _days())


def _try(action: Any, *args: Any) -> None:
    """Run a what-if: its report waits in the session for the analyst's confirmation."""
    st.session_state.pop(PENDING, None)
    try:
        with st.spinner("Replaying the stored history under the change..."):
            st.session_state[PENDING] = action(*args)
    except PayscoreError as e:
        st.error(str(e))


def _pending(editor: Editor, pending: Pending) -> None:
    verb = "Add" if pending.action == "add" else "Enable"
    with st.container(border=True):
        st.markdown(
            f"**What-if: {verb.lower()} rule {pending.code}**, {pending.first} .. {pending.last} "
            f"(event time), against policy version {pending.version or 0}. Nothing is stored "
            "until you confirm."
        )
        st.table(whatif_frame(pending))
        st.caption(
            "flagged: payments the rule would mark; labelled fraud: of those, labelled fraud; "
            "extra review: reviews with it minus without; overlap: flagged payments the current "
            "policy already reviews or declines."
        )

        def activate() -> None:
            st.session_state.pop(PENDING, None)
            _done(editor.confirm, pending)

        cols = st.columns([2, 1, 3])
        cols[0].button(
            f"Confirm: {verb.lower()} {pending.code}", key="rules_confirm", on_click=activate
        )
        cols[1].button(
            "Discard", key="rules_discard", on_click=lambda: st.session_state.pop(PENDING, None)
        )


def _list_form(editor: Editor, names: list[str]) -> None:
    def change(add: bool) -> None:
        name, values, reason = (_value(k) for k in ("rules_list", "rules_values", "rules_why"))
        if add:
            field = _value("rules_field")
            _done(editor.add_entries, name, None if field == NEW_LIST else field, values, reason)
        else:
            _done(editor.remove_entries, name, values, reason)

    with st.form("rules_list_change", border=True):
        st.markdown("**Add or remove list values**")
        cols = st.columns([2, 2, 3])
        cols[0].text_input("List name", key="rules_list", max_chars=64)
        cols[1].selectbox("Field (a new list only)", [NEW_LIST, *PAYMENT_FIELDS], key="rules_field")
        cols[2].text_input("Why", max_chars=1024, key="rules_why")
        st.text_area("Values (one a line, or separated by commas)", key="rules_values")
        if names:
            st.caption("Existing lists: " + ", ".join(names))
        buttons = st.columns(6)
        buttons[0].form_submit_button("Add to list", on_click=change, args=(True,))
        buttons[1].form_submit_button("Remove from list", on_click=change, args=(False,))
