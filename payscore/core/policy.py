"""Live rules and lists as data: parsing a rule from a file or flags, checking list values,
and composing the policy a consumer runs (the stock rules from settings plus stored rules).

Pure: the store (``store/policy.py``) reads and writes these; nothing here does I/O.
See docs/rules.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from payscore.core.decision import Policy
from payscore.core.rules import (
    ACTION_ALIASES,
    PAYMENT_FIELDS,
    RULE_KINDS,
    Rule,
    RuleError,
    condition_params,
)
from payscore.core.schema import MAX_ID_CHARS, OPTIONAL_TEXT_LIMITS

RULE_KEYS = ("code", "kind", "action", "params", "description")
MAX_DESCRIPTION_CHARS = 255
MAX_REASON_CHARS = 1024
_LIST_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the team writes it: the rule itself and a description for people."""

    rule: Rule
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored (params) and shown (audit before/after) for this rule."""
        return {
            "code": self.rule.code,
            "kind": self.rule.kind,
            "action": self.rule.action,
            "params": dict(self.rule.params),
            "description": self.description,
        }


def parse_rule(data: Any, source: str = "rule") -> RuleSpec:
    """A checked rule from a mapping (a TOML/JSON table, or flags gathered into one).

    Unknown keys, a missing code/kind/action, a bad action word and every problem the rule's
    kind finds are one ``RuleError`` naming the rule and the parameter.
    """
    if not isinstance(data, Mapping):
        raise RuleError("rule", source, "must be a table with code, kind, action and params")
    unknown = sorted(set(data) - set(RULE_KEYS))
    if unknown:
        raise RuleError(unknown[0], source, f"unknown key (a rule has {', '.join(RULE_KEYS)})")
    for key in ("code", "kind", "action"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RuleError(key, source, "is required")
    action = ACTION_ALIASES.get(data["action"].upper())
    if action is None:
        raise RuleError("action", f"rule {data['code']}", "must be APPROVE, REVIEW or DECLINE")
    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise RuleError("params", f"rule {data['code']}", "must be a table of parameters")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise RuleError("description", f"rule {data['code']}", "at most 255 characters of text")
    return RuleSpec(Rule(data["code"], data["kind"], dict(params), action), description)


def list_names(kind: str, params: Mapping[str, Any]) -> set[str]:
    """The stored lists a rule refers to (``in_list`` with ``list``), nested ones too."""
    if kind == "in_list":
        return {params["list"]} if params.get("list") is not None else set()
    if kind in ("all", "any"):
        return set().union(
            *(list_names(c["kind"], condition_params(c)) for c in params["conditions"])
        )
    return set()


@dataclass(frozen=True)
class StoredList:
    """A named list of values of one payment field."""

    name: str
    field: str
    values: frozenset[str] = frozenset()


def check_list_name(name: Any) -> str:
    if not isinstance(name, str) or not _LIST_NAME.fullmatch(name):
        raise RuleError("list", f"list {name!r}", "a list name is 1-64 of a-z, 0-9 and _")
    return name


def check_list_values(lst_field: Any, values: Iterable[Any], name: str) -> list[str]:
    """Values fit for a list of ``lst_field``: text a payment of that field could carry."""
    if lst_field not in PAYMENT_FIELDS:
        fields = ", ".join(PAYMENT_FIELDS)
        raise RuleError("field", f"list {name}", f"must be one of {fields}, not {lst_field!r}")
    most = OPTIONAL_TEXT_LIMITS.get(lst_field, 3 if lst_field == "currency" else MAX_ID_CHARS)
    out = list(dict.fromkeys(values))
    if not out:
        raise RuleError("values", f"list {name}", "give at least one value")
    for v in out:
        if not isinstance(v, str) or not 0 < len(v) <= most or v != v.strip():
            raise RuleError(
                "values", f"list {name}", f"{v!r} is not a {lst_field} (1-{most} characters)"
            )
    return out


def resolve(rule: Rule, lists: Mapping[str, StoredList]) -> Rule:
    """The rule with every stored list it names filled in (field and values)."""
    if not list_names(rule.kind, rule.params):
        return rule
    return Rule(rule.code, rule.kind, _resolved(rule.kind, rule.params, lists, rule), rule.action)


def _resolved(
    kind: str, params: Mapping[str, Any], lists: Mapping[str, StoredList], rule: Rule
) -> dict[str, Any]:
    if kind == "in_list" and params.get("list") is not None:
        stored = lists.get(params["list"])
        if stored is None:
            raise RuleError("list", f"rule {rule.code}", f"no list named {params['list']!r}")
        return {**params, "field": stored.field, "values": stored.values}
    if kind in ("all", "any"):
        conds = [
            {"kind": c["kind"], "params": _resolved(c["kind"], condition_params(c), lists, rule)}
            for c in params["conditions"]
        ]
        return {**params, "conditions": conds}
    return dict(params)


def live_policy(base: Policy, stored: Iterable[Rule], version: int) -> Policy:
    """The stock policy (thresholds and rules from settings) plus the enabled stored rules."""
    rules = (*base.rules, *stored)
    codes = [r.code for r in rules]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    if twice:
        raise RuleError("code", "policy", f"two rules share the code {twice[0]}")
    return Policy(base.thresholds, rules, version)


__all__ = [
    "RULE_KINDS",
    "RuleSpec",
    "StoredList",
    "check_list_name",
    "check_list_values",
    "list_names",
    "live_policy",
    "parse_rule",
    "resolve",
]
