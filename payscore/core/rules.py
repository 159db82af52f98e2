"""Business rules as data, evaluated over a whole batch at once.

A rule is a frozen record (code, kind, parameters, action). Its *kind* names an evaluator in
``RULE_KINDS`` that turns the batch's feature matrix into a boolean "fired" column, so new
kinds plug in without touching the scorer. Rules read features by name, never by position.
See docs/rules.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from payscore.errors import ConfigError, PayscoreError

APPROVED, REVIEW, DECLINED = "APPROVED", "REVIEW", "DECLINED"
STATUSES = (APPROVED, REVIEW, DECLINED)
SEVERITY = {APPROVED: 0, REVIEW: 1, DECLINED: 2}
#: What a rule may do: APPROVED is an allow rule (see ``decision.decide`` for precedence).
ACTIONS = STATUSES
#: Action words people type (APPROVE, DECLINE) -> the status the rule sets.
ACTION_ALIASES = {"APPROVE": APPROVED, "DECLINE": DECLINED, **{s: s for s in STATUSES}}
#: Payment fields a list rule may test (text fields of the message, see core/schema.py).
PAYMENT_FIELDS = (
    "transaction_id",
    "customer_id",
    "terminal_id",
    "currency",
    "channel",
    "merchant_category",
    "country",
)
OPERATORS = (">", ">=", "<", "<=", "between")
MAX_CODE_CHARS = 64
MAX_LIST_VALUES = 100_000
MAX_CONDITIONS = 20
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class RuleError(ConfigError):
    """A rule that cannot be used, in one line: ``rule CODE: param: problem``."""

    def __init__(self, setting: str, source: str, problem: str) -> None:
        PayscoreError.__init__(self, f"{source}: {setting}: {problem}")
        self.setting, self.source, self.problem = setting, source, problem


def velocity_feature(window_seconds: int) -> str:
    """The FeatureEngine column counting a customer's payments in the last ``window_seconds``."""
    return f"customer_nb_tx_{int(window_seconds)}s"


@dataclass(frozen=True)
class Rule:
    """When ``kind`` fires with ``params``: add reason ``code``, raise status to ``action``."""

    code: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    action: str = REVIEW

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            problem = "a rule code is 1-64 of A-Z, 0-9 and _, starting with a letter"
            raise RuleError("code", f"rule {self.code!r}", problem)
        if not isinstance(self.params, Mapping):
            raise _bad(self, "params", "must be a table of parameters")
        if self.kind not in RULE_KINDS:
            known = ", ".join(sorted(RULE_KINDS))
            raise _bad(self, "kind", f"unknown rule kind {self.kind!r} ({known})")
        if self.action not in ACTIONS:
            problem = f"must be APPROVE, REVIEW or DECLINE, not {self.action!r}"
            raise _bad(self, "action", problem)
        RULE_KINDS[self.kind].check(self)

    def required_features(self) -> tuple[str, ...]:
        return RULE_KINDS[self.kind].features(self.params)

    def required_fields(self) -> tuple[str, ...]:
        """Payment fields (not features) the rule reads: list membership, currency."""
        return RULE_KINDS[self.kind].fields(self.params)

    @property
    def is_block_list(self) -> bool:
        """A DECLINE rule on list membership: outranks allow rules (docs/rules.md)."""
        return self.kind == "in_list" and self.action == DECLINED


class Columns:
    """Read-only access to a batch: feature columns by name, and payment fields by name."""

    def __init__(
        self, feature_names: Sequence[str], X: np.ndarray, payments: Sequence[Any] | None = None
    ) -> None:
        self._index = {name: i for i, name in enumerate(feature_names)}
        self._X = X
        self._payments = payments
        self._fields: dict[str, list[Any]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> np.ndarray:
        return self._X[:, self._index[name]]

    def field(self, name: str) -> list[Any]:
        """One payment field (``customer_id``, ``currency``...) for every row of the batch."""
        if name not in self._fields:
            if self._payments is None:
                raise ConfigError("rules", "policy", f"rule reads payment field {name}, not given")
            self._fields[name] = [getattr(p, name) for p in self._payments]
        return self._fields[name]


@dataclass(frozen=True)
class RuleKind:
    """How to validate, wire up and evaluate one kind of rule."""

    features: Callable[[Mapping[str, Any]], tuple[str, ...]]
    evaluate: Callable[[Mapping[str, Any], Columns], np.ndarray]
    check: Callable[[Rule], None]
    fields: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda p: ()


def _bad(rule: Rule, name: str, problem: str) -> RuleError:
    return RuleError(name, f"rule {rule.code}", problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _positive(rule: Rule, name: str, integer: bool = False) -> None:
    value: Any = rule.params.get(name)
    types: tuple[type, ...] = (int,) if integer else (int, float)
    valid = isinstance(value, types) and not isinstance(value, bool)
    if not valid or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise _bad(rule, name, f"must be {kind}, got {value!r}")


def _number(rule: Rule, name: str) -> None:
    value = rule.params.get(name)
    if not _is_number(value):
        raise _bad(rule, name, f"must be a number, got {value!r}")


def _velocity_window(name: str) -> bool:
    return re.fullmatch(r"customer_nb_tx_[1-9][0-9]*s", name) is not None


def known_feature(name: Any) -> bool:
    """A column some FeatureEngine computes (any velocity window counts)."""
    from payscore.core.features import feature_names_for

    return isinstance(name, str) and (name in feature_names_for(()) or _velocity_window(name))


def _feature(rule: Rule) -> None:
    name = rule.params.get("feature")
    if not isinstance(name, str):
        raise _bad(rule, "feature", "must name a feature")
    if not known_feature(name):
        raise _bad(rule, "feature", f"unknown feature {name!r} (see docs/rules.md)")


def _check_velocity(rule: Rule) -> None:
    _positive(rule, "max_payments", integer=True)
    _positive(rule, "window_seconds", integer=True)


def _check_limit(rule: Rule) -> None:
    _positive(rule, "limit")


def _check_feature_above(rule: Rule) -> None:
    _feature(rule)
    _number(rule, "limit")


def _check_compare(rule: Rule) -> None:
    _feature(rule)
    op = rule.params.get("op")
    if op not in OPERATORS:
        raise _bad(rule, "op", f"operator must be one of {', '.join(OPERATORS)}, not {op!r}")
    if op != "between":
        _number(rule, "value")
        return
    _number(rule, "low")
    _number(rule, "high")
    if rule.params["low"] > rule.params["high"]:
        raise _bad(rule, "low", "must not be above high")


def _compare(p: Mapping[str, Any], c: Columns) -> np.ndarray:
    col = c[p["feature"]]
    op = p["op"]
    if op == "between":  # both ends included
        return (col >= p["low"]) & (col <= p["high"])
    return {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[op](
        col, p["value"]
    )


def _check_in_list(rule: Rule) -> None:
    field_name, values, name = (rule.params.get(k) for k in ("field", "values", "list"))
    if (name is None or field_name is not None) and field_name not in PAYMENT_FIELDS:
        # A stored list brings its own field; inline values need one.
        raise _bad(rule, "field", f"must be one of {', '.join(PAYMENT_FIELDS)}, not {field_name!r}")
    if name is not None and not (isinstance(name, str) and _CODE.fullmatch(name.upper())):
        raise _bad(rule, "list", f"must name a list (letters, digits, _), not {name!r}")
    if values is None and name is not None:
        return  # a stored list: its entries are filled in when the policy is loaded
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise _bad(rule, "values", "must be a list of values")
    if not values and name is None:
        raise _bad(rule, "values", "must not be empty")
    if len(values) > MAX_LIST_VALUES:
        raise _bad(rule, "values", f"at most {MAX_LIST_VALUES} values")
    for v in values:
        if not isinstance(v, str) or not 0 < len(v) <= 64:
            raise _bad(rule, "values", f"each value is text of 1-64 characters, not {v!r}")


def _in_list(p: Mapping[str, Any], c: Columns) -> np.ndarray:
    values = p.get("values") or ()
    wanted = values if isinstance(values, frozenset) else frozenset(values)
    col = c.field(p["field"])
    return np.fromiter((v in wanted for v in col), dtype=bool, count=len(col))


def _check_amount_per_currency(rule: Rule) -> None:
    limits = rule.params.get("limits")
    if not isinstance(limits, Mapping) or not limits:
        raise _bad(rule, "limits", "must be a non-empty table of currency -> limit")
    for currency, limit in limits.items():
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            raise _bad(rule, "limits", f"{currency!r} is not a 3-letter currency code")
        if not _is_number(limit) or limit <= 0:
            raise _bad(rule, "limits", f"the {currency} limit must be a positive number")
    if "default" in rule.params:
        _positive(rule, "default")


def _amount_per_currency(p: Mapping[str, Any], c: Columns) -> np.ndarray:
    limits, default = p["limits"], p.get("default", np.inf)
    limit = np.fromiter((limits.get(cur, default) for cur in c.field("currency")), dtype=float)
    return c["amount"] > limit


def condition_params(cond: Mapping[str, Any]) -> Mapping[str, Any]:
    """A condition of an all/any rule: ``{"kind": k, "params": {...}}`` or flat
    ``{"kind": k, "feature": ...}``."""
    return cond.get("params", {k: v for k, v in cond.items() if k != "kind"})


def _check_conditions(rule: Rule) -> None:
    """Each sub-condition of an all/any rule is checked as a rule of its own kind."""
    conditions = rule.params.get("conditions")
    if not isinstance(conditions, (list, tuple)) or not 0 < len(conditions) <= MAX_CONDITIONS:
        raise _bad(rule, "conditions", f"must be a list of 1-{MAX_CONDITIONS} conditions")
    for i, cond in enumerate(conditions):
        if not isinstance(cond, Mapping) or "kind" not in cond:
            raise _bad(rule, "conditions", f"condition {i + 1} needs a kind and its params")
        Rule(rule.code, cond["kind"], condition_params(cond), REVIEW)


def _sub(p: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(cond["kind"], condition_params(cond)) for cond in p["conditions"]]


def _combine(p: Mapping[str, Any], c: Columns, reduce: Any) -> np.ndarray:
    return reduce([RULE_KINDS[k].evaluate(params, c) for k, params in _sub(p)])


def _union(p: Mapping[str, Any], part: str) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for kind, params in _sub(p):
        names.update(dict.fromkeys(getattr(RULE_KINDS[kind], part)(params)))
    return tuple(names)


RULE_KINDS: dict[str, RuleKind] = {
    # More than max_payments by the customer in (t - window, t], the current one included.
    "velocity": RuleKind(
        features=lambda p: (velocity_feature(p["window_seconds"]),),
        evaluate=lambda p, c: c[velocity_feature(p["window_seconds"])] > p["max_payments"],
        check=_check_velocity,
    ),
    # The payment amount strictly above a limit (same currency units as the message).
    "amount_above": RuleKind(
        features=lambda p: ("amount",),
        evaluate=lambda p, c: c["amount"] > p["limit"],
        check=_check_limit,
    ),
    # Any engine feature strictly above a limit: room for rules without new code.
    "feature_above": RuleKind(
        features=lambda p: (p["feature"],),
        evaluate=lambda p, c: c[p["feature"]] > p["limit"],
        check=_check_feature_above,
    ),
    # Any engine feature compared with a value: >, >=, <, <=, or between low and high.
    "compare": RuleKind(
        features=lambda p: (p["feature"],), evaluate=_compare, check=_check_compare
    ),
    # A payment field's value is in a list (inline values, or a stored list by name).
    "in_list": RuleKind(
        features=lambda p: (),
        evaluate=_in_list,
        check=_check_in_list,
        fields=lambda p: (p["field"],),
    ),
    # The amount strictly above its currency's limit (unlisted currencies: ``default``, if set).
    "amount_per_currency": RuleKind(
        features=lambda p: ("amount",),
        evaluate=_amount_per_currency,
        check=_check_amount_per_currency,
        fields=lambda p: ("currency",),
    ),
    # Every one / at least one of several conditions, each a kind with its params.
    "all": RuleKind(
        features=lambda p: _union(p, "features"),
        evaluate=lambda p, c: _combine(p, c, lambda cols: np.logical_and.reduce(cols)),
        check=_check_conditions,
        fields=lambda p: _union(p, "fields"),
    ),
    "any": RuleKind(
        features=lambda p: _union(p, "features"),
        evaluate=lambda p, c: _combine(p, c, lambda cols: np.logical_or.reduce(cols)),
        check=_check_conditions,
        fields=lambda p: _union(p, "fields"),
    ),
}


def velocity_code(window_seconds: int) -> str:
    """A readable reason code for a velocity window: 3600 -> VELOCITY_1H."""
    for unit_seconds, unit in ((86400, "D"), (3600, "H"), (60, "M")):
        if window_seconds % unit_seconds == 0:
            return f"VELOCITY_{window_seconds // unit_seconds}{unit}"
    return f"VELOCITY_{window_seconds}S"


def default_rules(
    *,
    velocity_max_payments: int,
    velocity_window_seconds: int,
    amount_review_limit: float,
    amount_decline_limit: float,
) -> tuple[Rule, ...]:
    """The stock rule set built from settings: velocity (REVIEW) and two amount limits."""
    if amount_review_limit > amount_decline_limit:
        raise ConfigError(
            "amount_review_limit",
            "settings",
            f"{amount_review_limit} is above amount_decline_limit {amount_decline_limit}",
        )
    return (
        Rule(
            velocity_code(velocity_window_seconds),
            "velocity",
            {"max_payments": velocity_max_payments, "window_seconds": velocity_window_seconds},
            REVIEW,
        ),
        Rule("AMOUNT_HIGH", "amount_above", {"limit": amount_review_limit}, REVIEW),
        Rule("AMOUNT_EXTREME", "amount_above", {"limit": amount_decline_limit}, DECLINED),
    )


def required_features(rules: Sequence[Rule]) -> tuple[str, ...]:
    """Every feature the rules read, in first-use order."""
    names: dict[str, None] = {}
    for rule in rules:
        names.update(dict.fromkeys(rule.required_features()))
    return tuple(names)


def evaluate_rules(
    rules: Sequence[Rule],
    feature_names: Sequence[str],
    X: np.ndarray,
    payments: Sequence[Any] | None = None,
) -> np.ndarray:
    """Boolean matrix (n payments, n rules): which rule fired for which payment.

    ``payments`` (one per row of ``X``) give the fields list and currency rules read.
    """
    fired = np.zeros((X.shape[0], len(rules)), dtype=bool)
    if X.shape[0] == 0:
        return fired
    columns = Columns(feature_names, X, payments)
    for j, rule in enumerate(rules):
        missing = [name for name in rule.required_features() if name not in columns]
        if missing:
            raise ConfigError("rules", rule.code, f"feature engine lacks {', '.join(missing)}")
        fired[:, j] = RULE_KINDS[rule.kind].evaluate(rule.params, columns)
    return fired
