"""The rule kinds of live rules, their validation, and the precedence of lists, rules, model."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from payscore.core.decision import (
    APPROVED,
    DECLINED,
    MODEL_VERY_HIGH_RISK,
    REVIEW,
    Policy,
    Thresholds,
    decide,
)
from payscore.core.policy import StoredList, check_list_values, live_policy, parse_rule, resolve
from payscore.core.rules import Rule, RuleError, evaluate_rules
from payscore.core.schema import Payment

NAMES = ("amount", "customer_nb_tx_3600s", "terminal_risk_7day")


def pay(i: int, customer: str = "c1", currency: str = "EUR", country: str | None = "FR") -> Payment:
    return Payment(
        transaction_id=f"t{i}",
        customer_id=customer,
        terminal_id=f"term{i % 3}",
        amount="10.00",
        currency=currency,
        event_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
        country=country,
    )


def fired(rule: Rule, X: np.ndarray, payments: list[Payment] | None = None) -> list[bool]:
    return evaluate_rules((rule,), NAMES, X, payments)[:, 0].tolist()


X3 = np.array([[5.0, 1, 0.1], [10.0, 2, 0.5], [20.0, 3, 0.9]])


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"feature": "amount", "op": ">", "value": 10}, [False, False, True]),
        ({"feature": "amount", "op": ">=", "value": 10}, [False, True, True]),
        ({"feature": "amount", "op": "<", "value": 10}, [True, False, False]),
        ({"feature": "amount", "op": "<=", "value": 10}, [True, True, False]),
        (
            {"feature": "terminal_risk_7day", "op": "between", "low": 0.1, "high": 0.5},
            [True, True, False],
        ),
        (
            {"feature": "customer_nb_tx_3600s", "op": "between", "low": 3, "high": 3},
            [False, False, True],
        ),
    ],
)
def test_compare_operators(params: dict, expected: list[bool]) -> None:
    assert fired(Rule("C", "compare", params, REVIEW), X3) == expected


def test_in_list_reads_a_payment_field() -> None:
    rule = Rule("BL", "in_list", {"field": "customer_id", "values": ["bad", "worse"]}, DECLINED)
    payments = [pay(0, "good"), pay(1, "bad"), pay(2, "worse")]
    assert fired(rule, X3, payments) == [False, True, True]
    assert rule.required_fields() == ("customer_id",)


def test_in_list_on_an_optional_field_missing_from_the_payment() -> None:
    rule = Rule("CTRY", "in_list", {"field": "country", "values": ["KP"]}, DECLINED)
    payments = [pay(0, country=None), pay(1, country="KP"), pay(2, country="FR")]
    assert fired(rule, X3, payments) == [False, True, False]


def test_amount_per_currency() -> None:
    rule = Rule("AMT_CCY", "amount_per_currency", {"limits": {"EUR": 9, "USD": 15}}, REVIEW)
    payments = [pay(0, currency="EUR"), pay(1, currency="USD"), pay(2, currency="GBP")]
    # 5 EUR <= 9; 10 USD <= 15; GBP has no limit (and no default)
    assert fired(rule, X3, payments) == [False, False, False]
    payments = [pay(0, currency="USD"), pay(1, currency="EUR"), pay(2, currency="USD")]
    assert fired(rule, X3, payments) == [False, True, True]
    with_default = Rule(
        "AMT_CCY", "amount_per_currency", {"limits": {"EUR": 100}, "default": 15}, REVIEW
    )
    assert fired(with_default, X3, [pay(0, currency="GBP")] * 3) == [False, False, True]


def test_all_and_any_combine_conditions() -> None:
    conditions = [
        {"kind": "compare", "feature": "amount", "op": ">=", "value": 10},
        {"kind": "in_list", "params": {"field": "customer_id", "values": ["c2"]}},
    ]
    payments = [pay(0, "c2"), pay(1, "c1"), pay(2, "c2")]
    both = Rule("BOTH", "all", {"conditions": conditions}, REVIEW)
    either = Rule("EITHER", "any", {"conditions": conditions}, REVIEW)
    assert fired(both, X3, payments) == [False, False, True]
    assert fired(either, X3, payments) == [True, True, True]
    assert both.required_features() == ("amount",)
    assert both.required_fields() == ("customer_id",)


@pytest.mark.parametrize(
    "kind, params, action, match",
    [
        ("compare", {"feature": "no_such", "op": ">", "value": 1}, REVIEW, "unknown feature"),
        ("compare", {"feature": "amount", "op": "=>", "value": 1}, REVIEW, "operator"),
        ("compare", {"feature": "amount", "op": ">", "value": "1"}, REVIEW, "value"),
        ("compare", {"feature": "amount", "op": "between", "low": 2, "high": 1}, REVIEW, "low"),
        ("compare", {"feature": "amount", "op": "between", "low": 1}, REVIEW, "high"),
        ("in_list", {"field": "customer_id", "values": []}, DECLINED, "empty"),
        ("in_list", {"field": "customer_id", "values": "abc"}, DECLINED, "list of values"),
        ("in_list", {"field": "shoe_size", "values": ["1"]}, DECLINED, "field"),
        ("in_list", {"field": "customer_id", "values": [1]}, DECLINED, "values"),
        ("amount_per_currency", {"limits": {"EUR": "100"}}, REVIEW, "EUR limit"),
        ("amount_per_currency", {"limits": {"euro": 100}}, REVIEW, "currency code"),
        ("amount_per_currency", {"limits": {}}, REVIEW, "limits"),
        ("amount_above", {"limit": True}, REVIEW, "limit"),
        ("all", {"conditions": []}, REVIEW, "conditions"),
        ("any", {"conditions": [{"feature": "amount"}]}, REVIEW, "needs a kind"),
        (
            "all",
            {"conditions": [{"kind": "compare", "feature": "x", "op": ">", "value": 1}]},
            REVIEW,
            "unknown feature",
        ),
        ("compare", {"feature": "amount", "op": ">", "value": 1}, "ESCALATE", "action"),
    ],
)
def test_malformed_rules_are_one_clear_error(
    kind: str, params: dict, action: str, match: str
) -> None:
    with pytest.raises(RuleError, match=match) as info:
        Rule("BAD", kind, params, action)
    assert "\n" not in str(info.value) and str(info.value).startswith("rule BAD: ")


def decisions(policy: Policy, scores: list[float], payments: list[Payment]) -> list[tuple]:
    X = np.repeat(X3[:1], len(payments), axis=0)
    out = decide(
        policy, [p.transaction_id for p in payments], np.array(scores), NAMES, X, "v", payments
    )
    return [(d.status, d.reasons, d.policy_version) for d in out]


BLOCK = Rule("BLOCKED_CUSTOMER", "in_list", {"field": "customer_id", "values": ["bad"]}, DECLINED)
ALLOW = Rule("TRUSTED", "in_list", {"field": "customer_id", "values": ["vip", "bad"]}, APPROVED)
SMALL = Rule("SMALL", "compare", {"feature": "amount", "op": "<", "value": 100}, REVIEW)


def test_precedence_block_then_allow_then_rules_and_model() -> None:
    policy = Policy(Thresholds(0.5, 0.9), (SMALL, ALLOW, BLOCK), version=7)
    payments = [pay(0, "bad"), pay(1, "vip"), pay(2, "other"), pay(3, "other")]
    assert decisions(policy, [0.0, 0.99, 0.99, 0.0], payments) == [
        # the block list beats the allow list that also names "bad", and the rules
        (DECLINED, ("BLOCKED_CUSTOMER",), 7),
        # the allow list beats the model (very high risk) and the REVIEW rule
        (APPROVED, ("TRUSTED",), 7),
        # otherwise most severe of model and rules, all reasons kept
        (DECLINED, (MODEL_VERY_HIGH_RISK, "SMALL"), 7),
        (REVIEW, ("SMALL",), 7),
    ]


def test_a_decline_rule_that_is_not_a_list_does_not_beat_an_allow_list() -> None:
    big = Rule("BIG", "compare", {"feature": "amount", "op": ">", "value": 1}, DECLINED)
    policy = Policy(Thresholds(0.5, 0.9), (big, ALLOW))
    assert decisions(policy, [0.0, 0.0], [pay(0, "vip"), pay(1, "x")]) == [
        (APPROVED, ("TRUSTED",), None),
        (DECLINED, ("BIG",), None),
    ]


def test_parse_rule_from_a_table() -> None:
    spec = parse_rule(
        {
            "code": "BIG_EUR",
            "kind": "compare",
            "action": "decline",
            "params": {"feature": "amount", "op": ">", "value": 5000},
            "description": "big",
        }
    )
    assert spec.rule == Rule(
        "BIG_EUR", "compare", {"feature": "amount", "op": ">", "value": 5000}, DECLINED
    )
    assert spec.as_dict()["description"] == "big"


@pytest.mark.parametrize(
    "data, match",
    [
        ([1, 2], "must be a table"),
        ({"code": "A", "kind": "compare", "action": "REVIEW", "colour": 1}, "colour: unknown key"),
        ({"kind": "compare", "action": "REVIEW"}, "code: is required"),
        ({"code": "A", "kind": "compare", "action": "MAYBE", "params": {}}, "action"),
        ({"code": "A", "kind": "compare", "action": "REVIEW", "params": 3}, "params"),
        ({"code": "lower", "kind": "compare", "action": "REVIEW", "params": {}}, "code"),
    ],
)
def test_parse_rule_rejects(data: object, match: str) -> None:
    with pytest.raises(RuleError, match=match):
        parse_rule(data)


def test_stored_list_is_resolved_into_the_rule() -> None:
    rule = Rule("BL", "in_list", {"list": "blocked"}, DECLINED)
    lists = {"blocked": StoredList("blocked", "terminal_id", frozenset({"term1"}))}
    resolved = resolve(rule, lists)
    assert fired(resolved, X3, [pay(0), pay(1), pay(2)]) == [False, True, False]
    with pytest.raises(RuleError, match="no list named 'blocked'"):
        resolve(rule, {})


def test_list_values_are_checked_against_the_field() -> None:
    assert check_list_values("country", ["FR", "FR", "DE"], "c") == ["FR", "DE"]
    with pytest.raises(RuleError, match="not a country"):
        check_list_values("country", ["FRA"], "c")
    with pytest.raises(RuleError, match="at least one"):
        check_list_values("customer_id", [], "c")


def test_live_policy_keeps_the_stock_rules_and_refuses_twin_codes() -> None:
    base = Policy.from_values({"review": 0.5, "decline": 0.9})
    live = live_policy(base, [SMALL], 3)
    assert [r.code for r in live.rules] == ["VELOCITY_1H", "AMOUNT_HIGH", "AMOUNT_EXTREME", "SMALL"]
    assert live.version == 3 and live.thresholds == base.thresholds
    with pytest.raises(RuleError, match="AMOUNT_HIGH"):
        live_policy(base, [Rule("AMOUNT_HIGH", "amount_above", {"limit": 5}, REVIEW)], 4)
