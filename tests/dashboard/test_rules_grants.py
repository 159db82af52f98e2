"""The grants docs/rules.md gives the dashboard's database user are enough for every rule and
list change, on MariaDB; with SELECT only a change fails in one line and stores nothing."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from payscore.config import Settings
from payscore.core.policy import parse_rule
from payscore.errors import PayscoreError
from payscore.store.engine import make_engine
from payscore.store.policy import PolicyStore

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def documented_grants() -> list[str]:
    """The GRANT statements of the rules page's dashboard section."""
    section = DOC.read_text(encoding="utf-8").split("\n## On the dashboard\n", 1)[1]
    grants = re.findall(r"^GRANT [^;]+;$", section, flags=re.M)
    assert grants, "docs/rules.md gives no grants for the dashboard"
    return grants


@pytest.fixture
def restricted(db_url: str, _db_admin_engine: Any) -> Iterator[Any]:
    """``user(grants)``: a store as a new user with SELECT plus ``grants`` (DDL, own names)."""
    from sqlalchemy import text
    from sqlalchemy.engine import URL, make_url

    url, made, engines = make_url(db_url), [], []

    def user(grants: list[str]) -> PolicyStore:
        name, password = f"rw_{uuid.uuid4().hex[:12]}", secrets.token_hex(16)
        assert re.fullmatch(r"rw_[0-9a-f]{12}", name) and url.database
        with _db_admin_engine.begin() as conn:
            conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY :pw"), {"pw": password})
            made.append(name)
            conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{name}'@'%'"))
            for grant in grants:
                stmt = grant.replace("payscore.", f"`{url.database}`.").replace(
                    "'dashboard'@'%'", f"'{name}'@'%'"
                )
                conn.execute(text(stmt.rstrip(";")))
        as_user = URL.create(url.drivername, name, None, url.host, url.port, url.database)
        settings = Settings(
            database_url=as_user.render_as_string(hide_password=False),
            database_password=password,
        )
        engine = make_engine(settings)
        engines.append(engine)
        return PolicyStore(engine)

    try:
        yield user
    finally:
        for engine in engines:
            engine.dispose()
        with _db_admin_engine.begin() as conn:
            for name in made:
                conn.execute(text(f"DROP USER '{name}'@'%'"))


def test_the_documented_grants_allow_every_change(restricted: Any) -> None:
    store = restricted(documented_grants())
    rule = parse_rule(
        {
            "code": "BLOCKED",
            "kind": "in_list",
            "action": "DECLINE",
            "params": {"list": "blocked"},
        }
    )
    store.add_entries("blocked", "customer_id", ["C1", "C2"], "erin", "chargebacks")
    store.add_rule(rule, "erin", "block them")
    store.set_enabled("BLOCKED", False, "erin", "pause")
    store.set_enabled("BLOCKED", True, "erin", "resume")
    _, version = store.remove_entries("blocked", ["C1"], "erin", "paid back")
    assert version == 5 and store.stored_list("blocked").values == frozenset({"C2"})
    assert [e.change for e in store.history()] == [
        "list.remove",
        "rule.enable",
        "rule.disable",
        "rule.add",
        "list.add",
        "list.add",
    ]


def test_select_only_refuses_a_change_in_one_line(restricted: Any) -> None:
    store = restricted([])
    with pytest.raises(PayscoreError, match="database error") as e:
        store.add_entries("blocked", "customer_id", ["C1"], "erin", "chargebacks")
    assert "\n" not in str(e.value)
    assert store.version() == 0 and store.lists() == {}
