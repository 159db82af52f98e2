"""``payscore rules`` and ``payscore lists``: changes stored and audited; malformed ones refused
with one line and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.config import Settings
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import policy_audit, policy_list_entries, policy_rules, policy_versions

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    engine = make_engine(Settings(database_url=url))
    create_schema(engine)
    engine.dispose()
    return url


def run(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--database-url", url])
    return result.exit_code, result.output


def stored(url: str) -> tuple[int, ...]:
    engine = make_engine(Settings(database_url=url))
    try:
        with engine.connect() as conn:
            return tuple(
                len(conn.execute(select(t)).all())
                for t in (policy_versions, policy_rules, policy_list_entries, policy_audit)
            )
    finally:
        engine.dispose()


def test_lifecycle_from_flags_and_files(url: str, tmp_path: Path) -> None:
    code, out = run(
        url,
        "lists",
        "add",
        "blocked",
        "c1",
        "c2",
        "--field",
        "customer_id",
        "--actor",
        "ann",
        "--reason",
        "chargebacks",
    )
    assert code == 0 and "added 2 to list blocked; policy version 1" in out
    code, out = run(
        url,
        "rules",
        "add",
        "--code",
        "BLOCKED_CUSTOMER",
        "--kind",
        "in_list",
        "--action",
        "DECLINE",
        "--param",
        "list=blocked",
        "--actor",
        "ann",
    )
    assert code == 0 and "policy version 2" in out, out
    toml = tmp_path / "big.toml"
    toml.write_text(
        'code = "BIG_EUR"\nkind = "amount_per_currency"\naction = "REVIEW"\n'
        'description = "large euro payments"\n[params]\nlimits = { EUR = 5000 }\n'
    )
    code, out = run(url, "rules", "add", "--file", str(toml), "--actor", "bob")
    assert code == 0 and "BIG_EUR" in out, out
    rule_json = tmp_path / "night.json"
    rule_json.write_text(
        json.dumps(
            {
                "code": "NIGHT_BIG",
                "kind": "all",
                "action": "REVIEW",
                "params": {
                    "conditions": [
                        {"kind": "compare", "feature": "is_night", "op": ">=", "value": 1},
                        {
                            "kind": "compare",
                            "feature": "amount",
                            "op": "between",
                            "low": 500,
                            "high": 900,
                        },
                    ]
                },
            }
        )
    )
    assert run(url, "rules", "add", "-f", str(rule_json), "--actor", "bob")[0] == 0
    code, out = run(url, "rules", "list")
    assert "policy version 4" in out
    assert "enabled  BLOCKED_CUSTOMER in_list DECLINED" in out and "NIGHT_BIG all REVIEW" in out
    code, out = run(url, "rules", "disable", "BIG_EUR", "--actor", "cy", "--reason", "noisy")
    assert code == 0 and "disabled rule BIG_EUR; policy version 5" in out
    code, out = run(url, "rules", "show", "BIG_EUR")
    shown = json.loads(out)
    assert shown["enabled"] is False and shown["params"] == {"limits": {"EUR": 5000}}
    assert run(url, "rules", "enable", "BIG_EUR", "--actor", "cy")[0] == 0
    code, out = run(url, "rules", "history", "BIG_EUR")
    lines = [line for line in out.splitlines() if line.startswith("v")]
    assert [line.split()[2:4] for line in lines] == [
        ["cy", "rule.enable"],
        ["cy", "rule.disable"],
        ["bob", "rule.add"],
    ]
    assert "reason='noisy'" in lines[1]
    code, out = run(url, "lists", "remove", "blocked", "c1", "--actor", "ann")
    assert code == 0 and "removed 1" in out
    code, out = run(url, "lists", "show", "blocked")
    assert out.split("\n")[:2] == ["blocked (customer_id): 1 values", "c2"]
    assert "blocked (customer_id): 1 values" in run(url, "lists", "show")[1]


def test_the_actor_defaults_to_the_os_user(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "osuser")
    monkeypatch.setenv("LOGNAME", "osuser")
    assert run(url, "lists", "add", "c", "FR", "--field", "country")[0] == 0
    assert " osuser list.add c:FR" in run(url, "rules", "history")[1]


MALFORMED = [
    (
        [
            "--code",
            "X",
            "--kind",
            "compare",
            "--action",
            "REVIEW",
            "--param",
            "feature=nope",
            "--param",
            "op=>",
            "--param",
            "value=1",
        ],
        "unknown feature 'nope'",
    ),
    (
        [
            "--code",
            "X",
            "--kind",
            "compare",
            "--action",
            "REVIEW",
            "--param",
            "feature=amount",
            "--param",
            "op=~",
            "--param",
            "value=1",
        ],
        "operator must be one of",
    ),
    (
        [
            "--code",
            "X",
            "--kind",
            "in_list",
            "--action",
            "DECLINE",
            "--param",
            "field=customer_id",
            "--param",
            "values=[]",
        ],
        "values: must not be empty",
    ),
    (
        ["--code", "X", "--kind", "amount_above", "--action", "REVIEW", "--param", 'limit="ten"'],
        "limit: must be a positive number",
    ),
    (
        [
            "--code",
            "X",
            "--kind",
            "amount_per_currency",
            "--action",
            "REVIEW",
            "--param",
            'limits={"EUR": "100"}',
        ],
        "the EUR limit must be a positive number",
    ),
    (["--code", "X", "--kind", "teleport", "--action", "REVIEW"], "unknown rule kind"),
    (
        ["--code", "X", "--kind", "amount_above", "--action", "BLOCK", "--param", "limit=5"],
        "action",
    ),
    (["--kind", "amount_above", "--action", "REVIEW", "--param", "limit=5"], "code: is required"),
    (
        ["--code", "X", "--kind", "in_list", "--action", "DECLINE", "--param", "list=nosuch"],
        "no list named 'nosuch'",
    ),
    (
        [
            "--code",
            "AMOUNT_HIGH",
            "--kind",
            "amount_above",
            "--action",
            "REVIEW",
            "--param",
            "limit=5",
        ],
        "stock rule",
    ),
    (
        ["--code", "X", "--kind", "amount_above", "--action", "REVIEW", "--param", "limit"],
        "write name=value",
    ),
    (
        [
            "--code",
            "X",
            "--kind",
            "all",
            "--action",
            "REVIEW",
            "--param",
            'conditions=[{"kind": "compare", "feature": "amount", "op": ">", "value": "1"}]',
        ],
        "value: must be a number",
    ),
]


@pytest.mark.parametrize("args, message", MALFORMED)
def test_a_malformed_rule_is_one_line_and_nothing_is_stored(
    url: str, args: list[str], message: str
) -> None:
    code, out = run(url, "rules", "add", *args, "--actor", "ann")
    assert code in (1, 2)
    assert out.count("\n") == 1 and out.startswith("error:") and message in out, out
    assert "Traceback" not in out
    assert stored(url) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("code = \n", ".toml", "not valid TOML"),
        ("{", ".json", "not valid JSON"),
        (
            'code = "X"\nkind = "amount_above"\naction = "REVIEW"\ncolour = 1\n',
            ".toml",
            "colour: unknown key",
        ),
        ("[1, 2]", ".json", "must hold one rule table"),
    ],
)
def test_a_malformed_rule_file_is_refused(
    url: str, tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"rule{suffix}"
    path.write_text(content)
    code, out = run(url, "rules", "add", "--file", str(path), "--actor", "ann")
    assert code in (1, 2) and out.count("\n") == 1 and message in out, out
    assert stored(url) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["lists", "add", "newlist", "x"], "--field"),
        (["lists", "add", "c", "FRA", "--field", "country"], "not a country"),
        (["lists", "add", "c", "x", "--field", "shoe_size"], "field"),
        (["lists", "remove", "nolist", "x"], "no list named"),
        (["rules", "disable", "NOPE"], "no rule 'NOPE'"),
        (["rules", "show", "NOPE"], "no rule 'NOPE'"),
        (["lists", "add", "c", "FR", "--field", "country", "--actor", "x" * 65], "actor"),
    ],
)
def test_other_mistakes_are_one_line(url: str, args: list[str], message: str) -> None:
    code, out = run(url, *args)
    assert code in (1, 2) and out.count("\n") == 1 and message in out, out
    assert stored(url) == (0, 0, 0, 0)
