"""The Rules tab: read by everyone; changed by a signed-in analyst after a what-if.

The page runs through AppTest on a SQLite copy of the what-if test's stored world, so the
figures it shows are checked against that test's independent count. The changes' own
permission checks are tested on ``Editor`` directly, as a forged call would reach them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from payscore.config import Settings
from payscore.dashboard.rules_edit import (
    MAX_VALUES,
    MAX_WHATIF_DAYS,
    Editor,
    editing_off_reason,
    split_values,
    whatif_days,
)
from payscore.errors import InputError, PayscoreError
from payscore.store.engine import make_engine
from payscore.store.policy import PolicyStore
from tests.cli.test_rules_whatif import CANDIDATE, STOCK_REVIEW, independent, store_world
from tests.dashboard.test_app import (  # noqa: F401 - analyst_entry is a fixture
    ANALYST_PASSWORD,
    APP,
    _open,
    _sign_in,
    analyst_entry,
)

DAYS = 5
RULE_TOML = f"""code = "SMALL_AMOUNT"
kind = "amount_above"
action = "REVIEW"
description = "small payments, tried"
[params]
limit = {CANDIDATE}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stored world once; each test works on a copy of its database."""
    folder = tmp_path_factory.mktemp("rules-tab")
    store_world(f"sqlite:///{folder / 'world.db'}", folder)
    return folder


@pytest.fixture
def settings(world: Path, tmp_path: Path) -> Settings:
    shutil.copyfile(world / "world.db", tmp_path / "w.db")
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        model_path=str(world / "model.joblib"),
        review_threshold=1.0,
        decline_threshold=1.0,
        amount_review_limit=STOCK_REVIEW,
    )


def _store(settings: Settings) -> PolicyStore:
    return PolicyStore(make_engine(settings))


def _stored(settings: Settings) -> tuple[int, list[str], list[tuple[str, str]]]:
    """(policy version, rule codes, (actor, change) of every audit row) as stored."""
    store = _store(settings)
    try:
        rules = [r.code for r in store.rules()]
        audit = [(e.actor, e.change) for e in store.history()]
        return store.version(), rules, audit
    finally:
        store.engine.dispose()


def _editor(settings: Settings, who: str | None = "alice", **on: Any) -> Editor:
    allowed = settings.model_copy(update={"dashboard_policy_editing": True, **on})
    engine = make_engine(settings)
    return Editor(lambda: allowed, lambda: engine, lambda: who)


@pytest.fixture
def users(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Labelling (the sign-in) on, with test_app's analyst alice."""
    from pydantic import SecretStr

    entry = request.getfixturevalue("analyst_entry")
    return {"dashboard_labelling": True, "dashboard_users": SecretStr(entry)}


def _env(users: dict[str, Any]) -> dict[str, str]:
    """The same settings as a page's environment, with rule editing on."""
    return {
        "dashboard_policy_editing": "true",
        "dashboard_labelling": "true",
        "dashboard_users": users["dashboard_users"].get_secret_value(),
    }


# ------------------------------------------------------------------------- the actions


def test_editing_needs_its_setting_the_sign_in_and_an_analyst(
    settings: Settings, users: dict[str, Any]
) -> None:
    assert "dashboard_policy_editing = false" in str(editing_off_reason(settings))
    on = settings.model_copy(update={"dashboard_policy_editing": True})
    assert "dashboard_labelling" in str(editing_off_reason(on))
    assert editing_off_reason(on.model_copy(update=users)) is None


def test_every_action_checks_permission_itself(settings: Settings, users: dict[str, Any]) -> None:
    """A forged call (no form shown) is refused in the action and stores nothing."""
    signed_out = _editor(settings, None, **users)
    off = _editor(settings, "alice", dashboard_policy_editing=False, **users)
    for editor, problem in ((signed_out, "sign in"), (off, "changes are off")):
        for call in (
            lambda e: e.try_rule(RULE_TOML, "toml", "why", DAYS),
            lambda e: e.disable("1", "why"),
            lambda e: e.add_entries("blocked", "customer_id", "C1", "why"),
            lambda e: e.remove_entries("blocked", "C1", "why"),
        ):
            with pytest.raises(InputError, match=problem):
                call(editor)
    allowed = _editor(settings, "alice", **users)
    pending = allowed.try_rule(RULE_TOML, "toml", "tried", DAYS)
    with pytest.raises(InputError, match="sign in"):
        signed_out.confirm(pending)
    assert _stored(settings) == (0, [], [])


def test_a_malformed_rule_is_one_error_and_nothing_is_stored(
    settings: Settings, users: dict[str, Any]
) -> None:
    editor = _editor(settings, **users)
    for text, fmt, problem in (
        (
            'code = "X"\nkind = "compare"\naction = "REVIEW"\n[params]\nfeature = "amount"\n'
            'op = "=>"\nvalue = 5',
            "toml",
            "rule X: op: operator must be one of",
        ),
        ("{not json", "json", "not valid JSON"),
        (
            'code = "AMOUNT_HIGH"\nkind = "amount_above"\naction = "REVIEW"\n[params]\nlimit = 5',
            "toml",
            "taken by a stock rule",
        ),
    ):
        with pytest.raises(PayscoreError, match=problem) as e:
            editor.try_rule(text, fmt, "why", DAYS)
        assert "\n" not in str(e.value)
    assert _stored(settings) == (0, [], [])


def test_confirming_stores_the_tried_rule_in_the_analysts_name(
    settings: Settings, users: dict[str, Any]
) -> None:
    editor = _editor(settings, **users)
    pending = editor.try_rule(RULE_TOML, "toml", "too many small frauds", DAYS)
    assert _stored(settings) == (0, [], [])  # tried only
    expected = independent({"settings": settings}, rule=lambda amount: amount > CANDIDATE)
    t = pending.report.total
    assert [t.payments, t.flagged, t.flagged_fraud, t.extra_review, t.overlap] == [
        sum(day[i] for day in expected.values()) for i in range(5)
    ]
    assert "policy version 1" in editor.confirm(pending)
    assert _stored(settings) == (1, ["SMALL_AMOUNT"], [("alice", "rule.add")])
    store = _store(settings)
    assert store.history()[0].reason == "too many small frauds"
    store.engine.dispose()
    # Disabled, then enabled only after its own what-if; a stale report is refused.
    editor.disable("SMALL_AMOUNT", "noisy")
    again = editor.try_enable("SMALL_AMOUNT", "back on", DAYS)
    assert again.report.total.flagged == t.flagged
    editor.add_entries("vip", "customer_id", "C1", "a list change meanwhile")
    with pytest.raises(InputError, match="policy changed since the what-if"):
        editor.confirm(again)
    editor.confirm(editor.try_enable("SMALL_AMOUNT", "back on", DAYS))
    version, _, audit = _stored(settings)
    assert version == 4 and [c for _, c in audit] == [
        "rule.enable",
        "list.add",
        "rule.disable",
        "rule.add",
    ]


def test_bounds_of_the_inputs() -> None:
    assert split_values("C1, C2\nC3  C1") == ["C1", "C2", "C3", "C1"]
    with pytest.raises(InputError, match="at least one"):
        split_values(" ,\n")
    with pytest.raises(InputError, match="values per change"):
        split_values(" ".join(f"C{i}" for i in range(MAX_VALUES + 1)))
    assert whatif_days(MAX_WHATIF_DAYS) == MAX_WHATIF_DAYS
    for bad in (0, MAX_WHATIF_DAYS + 1, True, 2.5):
        with pytest.raises(InputError, match="what-if covers"):
            whatif_days(bad)


# --------------------------------------------------------------------------- the page


def _page(settings: Settings, monkeypatch: pytest.MonkeyPatch, **env: str) -> AppTest:
    for key in ("PAYSCORE_CONFIG", "PAYSCORE_DASHBOARD_REFRESH"):
        monkeypatch.delenv(key, raising=False)
    values = {
        "database_url": settings.database_url,
        "model_path": settings.model_path,
        "review_threshold": "1.0",
        "decline_threshold": "1.0",
        "amount_review_limit": str(STOCK_REVIEW),
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"PAYSCORE_{name.upper()}", str(value))
    monkeypatch.chdir(Path(settings.database_url.removeprefix("sqlite:///")).parent)
    at = AppTest.from_file(APP, default_timeout=120).run()
    _open(at, "Rules")
    assert not at.exception, [e.value for e in at.exception]
    return at


def _buttons(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


def test_everyone_reads_the_rules_lists_and_trail(
    settings: Settings, users: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = _editor(settings, "bob", **users)
    editor.add_entries("blocked", "customer_id", "C9 C8", "chargebacks")
    editor.confirm(editor.try_rule(RULE_TOML, "toml", "small ones", 1))
    at = _page(settings, monkeypatch)
    rules = at.dataframe[0].value
    assert list(rules["reason code"]) == [
        "SMALL_AMOUNT",
        "VELOCITY_1H",
        "AMOUNT_HIGH",
        "AMOUNT_EXTREME",
    ]
    assert list(rules["source"]) == ["stored, version 2", "settings", "settings", "settings"]
    assert any("Policy version **2**" in c.value for c in at.caption)
    lists = next(d.value for d in at.dataframe if "field" in d.value.columns)
    assert list(lists.itertuples(index=False, name=None)) == [("blocked", "customer_id", 2)]
    values = next(d.value for d in at.dataframe if list(d.value.columns) == ["value"])
    assert list(values["value"]) == ["C8", "C9"]
    trail = next(d.value for d in at.dataframe if "who" in d.value.columns)
    assert list(trail[["who", "change", "why"]].itertuples(index=False, name=None)) == [
        ("bob", "rule.add", "small ones"),
        ("bob", "list.add", "chargebacks"),
        ("bob", "list.add", "chargebacks"),
    ]
    at.selectbox(key="rules_history_of").select("SMALL_AMOUNT").run()
    trail = next(d.value for d in at.dataframe if "who" in d.value.columns)
    assert list(trail["subject"]) == ["SMALL_AMOUNT"]
    assert "Try on history" not in _buttons(at)
    assert any("dashboard_policy_editing = false" in i.value for i in at.info)


def test_no_change_forms_before_signing_in(
    settings: Settings, users: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(settings, monkeypatch, **_env(users))
    assert not {"Try on history", "Add to list", "Disable"} & _buttons(at)
    assert any("Sign in (sidebar) to change rules" in i.value for i in at.info)


def test_an_analyst_tries_confirms_and_changes_a_list(
    settings: Settings, users: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _sign_in(_page(settings, monkeypatch, **_env(users)), "alice", ANALYST_PASSWORD)
    _open(at, "Rules")
    at.number_input(key="rules_days").set_value(DAYS)
    at.text_area(key="rules_text").input("code = 'BROKEN'\nkind = 'nope'")
    at.text_input(key="rules_reason").input("try")
    next(b for b in at.button if b.label == "Try on history").click().run()
    assert [e.value for e in at.error] == ["rule: action: is required"]
    assert _stored(settings) == (0, [], [])

    at.text_area(key="rules_text").input(RULE_TOML)
    next(b for b in at.button if b.label == "Try on history").click().run()
    assert not at.exception and not at.error
    report = at.table[0].value
    expected = independent({"settings": settings}, rule=lambda amount: amount > CANDIDATE)
    totals = [sum(day[i] for day in expected.values()) for i in range(5)]
    assert list(report.loc["total"]) == [
        f"{totals[0]:,}",
        f"{totals[1]:,}",
        f"{totals[2]:,}",
        f"{totals[3]:+,}",
        f"{totals[4]:,}",
    ]
    assert len(report) == DAYS + 1
    assert _stored(settings) == (0, [], [])  # nothing before the confirmation
    at.button(key="rules_confirm").click().run()
    assert "Rule SMALL_AMOUNT added" in at.success[0].value
    assert _stored(settings) == (1, ["SMALL_AMOUNT"], [("alice", "rule.add")])

    at.text_input(key="rules_list").input("blocked")
    at.selectbox(key="rules_field").select("customer_id")
    at.text_area(key="rules_values").input("C1\nC2")
    at.text_input(key="rules_why").input("chargebacks")
    next(b for b in at.button if b.label == "Add to list").click().run()
    assert "Added 2 to list blocked by alice" in at.success[0].value
    at.text_area(key="rules_values").input("C1")
    next(b for b in at.button if b.label == "Remove from list").click().run()
    assert "Removed 1 from list blocked by alice" in at.success[0].value
    store = _store(settings)
    assert store.stored_list("blocked").values == frozenset({"C2"})
    assert [(e.actor, e.change, e.subject) for e in store.history()][:3] == [
        ("alice", "list.remove", "blocked:C1"),
        ("alice", "list.add", "blocked:C2"),
        ("alice", "list.add", "blocked:C1"),
    ]
    store.engine.dispose()


def test_an_analyst_disables_then_enables_after_a_what_if(
    settings: Settings, users: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _editor(settings, "bob", **users).confirm(
        _editor(settings, "bob", **users).try_rule(RULE_TOML, "toml", "small ones", 1)
    )
    at = _sign_in(_page(settings, monkeypatch, **_env(users)), "alice", ANALYST_PASSWORD)
    _open(at, "Rules")
    at.number_input(key="rules_days").set_value(DAYS)
    at.text_input(key="rules_toggle_reason").input("too many reviews")
    at.button(key="rules_disable").click().run()
    assert "Rule SMALL_AMOUNT disabled by alice" in at.success[0].value
    assert "rules_disable" not in {b.key for b in at.button}
    at.text_input(key="rules_toggle_reason").input("the season is over")
    at.button(key="rules_try_enable").click().run()
    assert at.table[0].value.index[-1] == "total" and len(at.table[0].value) == DAYS + 1
    assert _stored(settings)[0] == 2  # tried, not stored
    at.button(key="rules_confirm").click().run()
    assert "Rule SMALL_AMOUNT enabled by alice" in at.success[0].value
    store = _store(settings)
    assert [(e.actor, e.change, e.reason) for e in store.history("SMALL_AMOUNT")] == [
        ("alice", "rule.enable", "the season is over"),
        ("alice", "rule.disable", "too many reviews"),
        ("bob", "rule.add", "small ones"),
    ]
    assert store.rule("SMALL_AMOUNT").enabled
    store.engine.dispose()
