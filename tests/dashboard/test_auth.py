"""Analysts' credentials: made by the CLI from stdin, stored hashed, plaintext refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.config import Settings, load_settings, parse_dashboard_users
from payscore.errors import ConfigError

PASSWORD = "correct horse battery staple"


def test_hash_password_reads_stdin_and_prints_a_hash_the_sign_in_accepts() -> None:
    from streamlit_authenticator.utilities.hasher import Hasher

    result = CliRunner().invoke(app, ["dashboard", "hash-password", "erin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    entry = result.output.strip()
    assert PASSWORD not in result.output
    users = parse_dashboard_users(entry)
    assert list(users) == ["erin"]
    assert Hasher.check_pw(PASSWORD, users["erin"])
    assert not Hasher.check_pw("another password", users["erin"])
    assert Settings(dashboard_users=entry).dashboard_users is not None


@pytest.mark.parametrize(
    ("password", "problem"), [("short", "at least 12"), ("é" * 40, "72 bytes")]
)
def test_hash_password_refuses_weak_or_truncated_passwords(password: str, problem: str) -> None:
    result = CliRunner().invoke(app, ["dashboard", "hash-password", "erin"], input=password + "\n")
    assert result.exit_code == 1 and problem in result.output
    assert password not in result.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("erin:hunter2-plaintext", "not a bcrypt hash"),
        ("Erin:$2b$04$" + "a" * 53, "lower case"),
        ("erin", "name:bcrypt-hash"),
        ("erin:$2b$04$" + "a" * 53 + ",erin:$2b$04$" + "b" * 53, "listed twice"),
    ],
)
def test_dashboard_users_takes_hashes_only(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings(environ={"PAYSCORE_DASHBOARD_USERS": value})
    assert "hunter2" not in str(caught.value)  # a plaintext password is never echoed


def test_labelling_off_by_default_and_users_masked() -> None:
    settings = Settings(dashboard_users="erin:$2b$04$" + "a" * 53)
    assert settings.dashboard_labelling is False
    rows = {name: shown for name, shown, _ in load_settings(environ={}).rows()}
    assert rows["dashboard_labelling"] == "False" and rows["dashboard_users"] == "(unset)"
    loaded = load_settings(environ={"PAYSCORE_DASHBOARD_USERS": "erin:$2b$04$" + "a" * 53})
    assert dict((n, s) for n, s, _ in loaded.rows())["dashboard_users"] == "********"


def test_dashboard_refuses_to_start_labelling_without_analysts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PAYSCORE_DASHBOARD_LABELLING", "true")
    monkeypatch.delenv("PAYSCORE_DASHBOARD_USERS", raising=False)
    monkeypatch.delenv("PAYSCORE_CONFIG", raising=False)
    monkeypatch.chdir(str(tmp_path))
    result = CliRunner().invoke(app, ["dashboard", "--port", "1"])
    assert result.exit_code == 1
    assert "dashboard_users names no analyst" in result.output
