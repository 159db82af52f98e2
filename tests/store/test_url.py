"""The database URL payscore connects with: the password set through SQLAlchemy's URL type,
so that every character survives, and an IPv6 host keeps its brackets."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from payscore.config import Settings, mask_url
from payscore.errors import ConfigError
from payscore.store.engine import database_url, make_engine, shown_url

# Each one broke the old quote_plus join somewhere: a space came back as "+", and the rest
# are URL delimiters or escapes.
PASSWORDS = ["two words", "at@sign", "hash#tag", "per%25cent%", "sl/ash", "pl+us", " @#%/+:?&= "]


def _settings(url: str, password: str | None) -> Settings:
    return Settings(
        database_url=url, database_password=None if password is None else SecretStr(password)
    )


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_round_trips_through_the_url(password: str) -> None:
    settings = _settings("mysql://payscore@db.example:3306/payscore", password)
    url = database_url(settings)
    assert url.password == password
    assert (url.username, url.host, url.port, url.database) == (
        "payscore",
        "db.example",
        3306,
        "payscore",
    )
    # Rendered to text and parsed again, as a URL passed on to a child process would be.
    assert make_url(url.render_as_string(hide_password=False)).password == password
    # What the driver is handed: the engine's URL, before and after make_engine's changes.
    assert create_engine(url).url.password == password
    engine = make_engine(settings)
    assert engine.url.password == password
    assert shown_url(engine.url) == "mysql://payscore:********@db.example:3306/payscore"
    engine.dispose()


def test_an_ipv6_host_keeps_its_brackets() -> None:
    settings = _settings("mysql://payscore@[::1]:3307/payscore", "a b@#")
    url = database_url(settings)
    assert (url.host, url.port, url.password) == ("::1", 3307, "a b@#")
    rendered = url.render_as_string(hide_password=False)
    assert "@[::1]:3307/payscore" in rendered
    assert make_url(rendered).host == "::1"
    assert mask_url(rendered) == "mysql://payscore:********@[::1]:3307/payscore"
    assert shown_url(url) == "mysql://payscore:********@[::1]:3307/payscore"


def test_a_url_without_a_password_is_left_as_it_is() -> None:
    url = database_url(_settings("mysql://payscore@[::1]/payscore", None))
    assert url.password is None and url.host == "::1"
    assert database_url(_settings("sqlite:///x.db", None)).database == "x.db"


def test_a_password_without_a_user_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no user for the password") as info:
        database_url(_settings("mysql://db.example/payscore", "s3cret"))
    assert info.value.setting == "database_password"
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="names no user"):
        make_engine(_settings("mysql://db.example/payscore", "s3cret"))


def test_a_password_set_twice_is_refused_without_showing_either() -> None:
    with pytest.raises(ConfigError, match="carries a password too") as info:
        database_url(_settings("mysql://u:inurl@db.example/payscore", "insetting"))
    assert "inurl" not in str(info.value) and "insetting" not in str(info.value)


@pytest.mark.integration
def test_a_user_with_every_awkward_character_connects(
    mariadb_url: str, _db_admin_engine: Any
) -> None:
    """A real MariaDB user whose password has all of them; connect, ask who we are."""
    user = f"ps_pw_{secrets.token_hex(6)}"
    password = "".join(PASSWORDS)
    admin = make_url(mariadb_url)
    with _db_admin_engine.begin() as conn:
        # The name is ours (hex); the password goes as a bound parameter.
        conn.execute(text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY :pw"), {"pw": password})
    try:
        settings = _settings(f"mysql://{user}@127.0.0.1:{admin.port}/", password)
        engine = make_engine(settings)
        try:
            with engine.connect() as conn:
                who = conn.execute(text("SELECT CURRENT_USER()")).scalar_one()
        finally:
            engine.dispose()
        assert who == f"{user}@127.0.0.1"
    finally:
        with _db_admin_engine.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
