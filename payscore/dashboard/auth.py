"""Who may label: analysts sign in with streamlit-authenticator, against bcrypt hashes.

The credentials are ``dashboard_users`` (name:bcrypt-hash, never plaintext). Signing in lasts
for the browser tab's Streamlit session: no re-authentication cookie is set, and the cookie key
is random per server process, so no cookie made elsewhere can sign anyone in.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import streamlit as st

from payscore.config import Settings, parse_dashboard_users

# The sign-in library's own session keys.
_STATUS = "authentication_status"
_USER = "username"


def _library() -> Any:
    """streamlit_authenticator, imported quietly: importing it outside a running page logs
    Streamlit's "no runtime" warnings, which would only be noise on the command line."""
    logging.disable(logging.WARNING)
    try:
        import streamlit_authenticator
    finally:
        logging.disable(logging.NOTSET)
    return streamlit_authenticator


def hash_password(password: str) -> str:
    """A bcrypt hash in the form the sign-in checks (the library's own hasher)."""
    return str(_library().Hasher.hash(password))


@st.cache_resource(show_spinner=False)
def _cookie_key() -> str:
    return secrets.token_urlsafe(32)


def labelling_off_reason(settings: Settings) -> str | None:
    """Why the page offers no labelling at all, or None when analysts may sign in."""
    if not settings.dashboard_labelling:
        return "Labelling is off (`dashboard_labelling = false`): this page is read-only."
    if settings.dashboard_users is None or not parse_dashboard_users(
        settings.dashboard_users.get_secret_value()
    ):
        return "Labelling is on, but `dashboard_users` names no analyst: nobody can sign in."
    return None


def sign_in(settings: Settings) -> str | None:
    """The sign-in form (sidebar) or the signed-in analyst with a sign-out button.

    Returns the signed-in analyst's name, or None. Call only when labelling is on.
    """
    assert settings.dashboard_users is not None  # noqa: S101 - labelling_off_reason checked
    users = parse_dashboard_users(settings.dashboard_users.get_secret_value())
    credentials = {
        "usernames": {name: {"name": name, "password": hashed} for name, hashed in users.items()}
    }
    authenticator = _library().Authenticate(
        credentials,
        cookie_name="payscore_analyst",
        cookie_key=_cookie_key(),
        cookie_expiry_days=0,  # no re-authentication cookie: sign in per browser session
        auto_hash=False,  # hashes only; config validation already refused anything else
        login_sleep_time=0,  # that pause waits for a cookie, and none is ever set
    )
    with st.sidebar:
        before = signed_in()
        try:
            authenticator.login(
                location="sidebar",
                key="analyst_sign_in",
                fields={
                    "Form name": "Analyst sign-in",
                    "Username": "Analyst",
                    "Password": "Password",
                    "Login": "Sign in",
                },
            )
        except Exception as e:  # noqa: BLE001 - the library's LoginError and kin, shown
            st.error(f"Sign-in failed: {e}")
        if before is None and signed_in() is not None:
            st.rerun()  # drawn once more without the form, which this run already showed
        status = st.session_state.get(_STATUS)
        if status is False:
            st.error("Wrong analyst name or password.")
        analyst = signed_in()
        if analyst is None:
            can = "label review payments or change rules and lists"
            if not settings.dashboard_policy_editing:
                can = "label review payments"
            st.caption(f"Sign in to {can}; everything else needs no sign-in.")
            return None
        st.caption(f"Signed in as **{analyst}**")
        authenticator.logout("Sign out", "sidebar", key="analyst_sign_out")
    return signed_in()


def signed_in() -> str | None:
    """The analyst signed in to this browser session, if any."""
    if st.session_state.get(_STATUS) is not True:
        return None
    name = st.session_state.get(_USER)
    return name if isinstance(name, str) and name else None
