"""Stored rules and lists: versions, audit, one-transaction changes, and the schema upgrade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, inspect, select, text

from payscore.config import Settings
from payscore.core.policy import parse_rule
from payscore.core.rules import DECLINED
from payscore.errors import InputError, PayscoreError
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.policy import PolicyStore
from payscore.store.schema import (
    policy_audit,
    policy_list_entries,
    policy_rules,
    policy_versions,
    scored_transactions,
)
from tests.store.rows import row

POLICY_TABLES = (
    "policy_audit",
    "policy_list_entries",
    "policy_lists",
    "policy_rules",
    "policy_versions",
)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'policy.db'}"))
        create_schema(engine)
    else:
        engine = make_engine(Settings(database_url=request.getfixturevalue("db_url")))
    yield engine
    engine.dispose()


BLOCK = {
    "code": "BLOCKED_CUSTOMER",
    "kind": "in_list",
    "action": "DECLINE",
    "params": {"list": "blocked_customers"},
}


def counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            len(conn.execute(select(t)).all())
            for t in (policy_versions, policy_rules, policy_list_entries, policy_audit)
        )


def test_changes_bump_the_version_and_are_audited(db: Engine) -> None:
    store = PolicyStore(db)
    assert store.version() == 0 and store.load().rules == ()
    added, v1 = store.add_entries("blocked_customers", "customer_id", ["c9", "c8"], "ann", "fraud")
    assert (added, v1) == (["c9", "c8"], 1)
    rule, v2 = store.add_rule(parse_rule(BLOCK), "ann", "block list")
    assert (rule.code, rule.enabled, v2) == ("BLOCKED_CUSTOMER", True, 2)
    loaded = store.load()
    assert loaded.version == 2
    (live,) = loaded.rules
    assert (live.action, live.params["field"], live.params["values"]) == (
        DECLINED,
        "customer_id",
        frozenset({"c9", "c8"}),
    )
    _, v3 = store.set_enabled("BLOCKED_CUSTOMER", False, "bob", "too broad")
    assert v3 == 3 and store.load().rules == ()
    gone, v4 = store.remove_entries("blocked_customers", ["c9", "nope"], "bob")
    assert (gone, v4) == (["c9"], 4)
    assert store.stored_list("blocked_customers").values == frozenset({"c8"})
    history = store.history()
    assert [(e.version, e.actor, e.change, e.subject) for e in history] == [
        (4, "bob", "list.remove", "blocked_customers:c9"),
        (3, "bob", "rule.disable", "BLOCKED_CUSTOMER"),
        (2, "ann", "rule.add", "BLOCKED_CUSTOMER"),
        (1, "ann", "list.add", "blocked_customers:c8"),
        (1, "ann", "list.add", "blocked_customers:c9"),
    ]
    assert history[1].before["enabled"] is True and history[1].after["enabled"] is False
    assert history[1].reason == "too broad"
    assert [e.change for e in store.history("BLOCKED_CUSTOMER")] == ["rule.disable", "rule.add"]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.add_rule(parse_rule(BLOCK), "ann"), "no list named 'blocked_customers'"),
        (lambda s: s.add_entries("new_list", None, ["x"], "ann"), "--field"),
        (lambda s: s.add_entries("countries", "country", ["FRA"], "ann"), "not a country"),
        (lambda s: s.add_entries("Bad-Name", "country", ["FR"], "ann"), "list name"),
        (lambda s: s.add_entries("ok", "shoe_size", ["1"], "ann"), "field"),
        (lambda s: s.remove_entries("missing", ["x"], "ann"), "no list named"),
        (lambda s: s.set_enabled("NOPE", False, "ann"), "no rule 'NOPE'"),
        (lambda s: s.add_entries("ok", "country", ["FR"], ""), "actor"),
        (
            lambda s: s.add_rule(
                parse_rule(
                    {
                        "code": "AMOUNT_HIGH",
                        "kind": "amount_above",
                        "action": "REVIEW",
                        "params": {"limit": 5},
                    }
                ),
                "ann",
                reserved=("AMOUNT_HIGH",),
            ),
            "stock rule",
        ),
    ],
)
def test_a_refused_change_stores_nothing(db: Engine, change, match: str) -> None:
    store = PolicyStore(db)
    with pytest.raises(PayscoreError, match=match):
        change(store)
    assert counts(db) == (0, 0, 0, 0)
    assert store.version() == 0


def test_a_second_rule_with_the_same_code_is_refused(db: Engine) -> None:
    store = PolicyStore(db)
    spec = parse_rule(
        {
            "code": "BIG",
            "kind": "compare",
            "action": "REVIEW",
            "params": {"feature": "amount", "op": ">", "value": 5},
        }
    )
    store.add_rule(spec, "ann")
    before = counts(db)
    with pytest.raises(InputError, match="exists already"):
        store.add_rule(spec, "ann")
    assert counts(db) == before


def test_initdb_upgrades_a_database_made_before_policies(db: Engine) -> None:
    """An older database: no policy tables, no policy_version column, decisions in it."""
    with db.begin() as conn:
        for name in POLICY_TABLES:
            conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(text("ALTER TABLE scored_transactions DROP COLUMN policy_version"))
        old = row("old1", 1)
        conn.execute(
            insert(scored_transactions.c.transaction_id.table).values(
                {k: v for k, v in old.items()}
            ),
        )
    report = create_schema(db)
    assert report.columns_added == ["scored_transactions.policy_version"]
    assert set(POLICY_TABLES) <= set(report.created)
    with db.connect() as conn:
        cols = {c["name"] for c in inspect(conn).get_columns("scored_transactions")}
        assert "policy_version" in cols
        assert conn.execute(select(scored_transactions.c.policy_version)).all() == [(None,)]
    again = create_schema(db)
    assert again.columns_added == [] and again.created == []
    PolicyStore(db).add_entries("x", "country", ["FR"], "ann")  # the new tables work
