"""Live-policy work shared by ``payscore rules`` and the dashboard's Rules tab.

One place for: the stock codes a stored rule may not take, a rule read from TOML or JSON text,
and the what-if replay (the current policy and a candidate deciding the same stored payments
with ``run_backtest``, the production scoring path). See docs/rules.md.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from datetime import time as day_start
from typing import TYPE_CHECKING, Any

import tomllib

from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.config import Settings
    from payscore.core.policy import RuleSpec
    from payscore.core.policy_whatif import WhatIf
    from payscore.core.rules import Rule

MAX_RULE_TEXT_BYTES = 1_048_576
FORMATS = ("toml", "json")


def stock_rules(settings: Settings) -> tuple[Rule, ...]:
    """The stock rules from settings (velocity and two amount limits)."""
    from payscore.core.rules import default_rules

    return default_rules(
        velocity_max_payments=settings.velocity_max_payments,
        velocity_window_seconds=settings.velocity_window_seconds,
        amount_review_limit=settings.amount_review_limit,
        amount_decline_limit=settings.amount_decline_limit,
    )


def stock_codes(settings: Settings) -> tuple[str, ...]:
    """The codes of the stock rules: a stored rule may not take one."""
    return tuple(r.code for r in stock_rules(settings))


def rule_table(text: str, fmt: str, source: str) -> dict[str, Any]:
    """One rule table from TOML or JSON text; a problem is one ``InputError`` line."""
    if fmt not in FORMATS:
        raise InputError(f"{source}: a rule is TOML or JSON, not {fmt!r}")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RULE_TEXT_BYTES:
        raise InputError(f"{source}: larger than {MAX_RULE_TEXT_BYTES} bytes")
    try:
        data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{source}: not valid {fmt.upper()}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{source}: must hold one rule table")
    return data


def rule_from_text(text: str, fmt: str, source: str = "rule") -> RuleSpec:
    """A checked rule from TOML or JSON text, by the same parser as ``rules add --file``."""
    from payscore.core.policy import parse_rule

    return parse_rule(rule_table(text, fmt, source), source)


REPORT_COLUMNS = ("payments", "flagged", "labelled fraud", "extra review", "overlap")


def report_rows(report: WhatIf) -> list[tuple[str, list[str]]]:
    """The what-if report as shown: (day or "total", the ``REPORT_COLUMNS`` formatted)."""
    rows = [(str(day), c) for day, c in report.days.items()] + [("total", report.total)]
    return [
        (
            label,
            [
                f"{c.payments:,}",
                f"{c.flagged:,}",
                f"{c.flagged_fraud:,}",
                f"{c.extra_review:+,}",
                f"{c.overlap:,}",
            ],
        )
        for label, c in rows
    ]


def replay(
    settings: Settings,
    days: int,
    *,
    rule: Rule | None = None,
    rule_key: str | None = None,
    review_threshold: float | None = None,
) -> tuple[WhatIf, str, date, date, int | None]:
    """What-if of one change (a rule, a stored rule by code or id, or a review threshold) over
    the last ``days`` stored days: the report, what was tried, the first and last day
    replayed, and the policy version it was compared with."""
    from payscore.core.backtest import run_backtest
    from payscore.core.model import load_artifact
    from payscore.core.policy import live_policy, resolve
    from payscore.core.policy_whatif import compare, with_review_threshold, with_rule
    from payscore.core.rules import Rule
    from payscore.core.scoring import Scorer, engine_for, label_delay_days
    from payscore.pipeline import build_scorer
    from payscore.store import state
    from payscore.store.engine import make_engine
    from payscore.store.policy import PolicyStore
    from payscore.store.policy_history import load_payments

    if sum(x is not None for x in (rule, rule_key, review_threshold)) != 1:
        raise InputError("try exactly one of a rule, a stored rule or a review threshold")
    artifact = load_artifact(settings.model_path, settings)
    db = make_engine(settings)
    try:
        store = PolicyStore(db)
        loaded = store.load()
        current = live_policy(build_scorer(settings, artifact).policy, loaded.rules, loaded.version)
        if review_threshold is not None:
            base, candidate, subject = with_review_threshold(current, review_threshold)
            what = f"review threshold {review_threshold}"
        else:
            if rule is None:
                s = store.rule(str(rule_key))
                rule = Rule(s.code, s.kind, s.params, s.action)
            base, candidate, subject = with_rule(current, resolve(rule, store.lists()))
            what = f"rule {rule.code}"
        latest = state.latest_event_time(db, None)
        if latest is None:
            raise InputError("no stored payments to replay")
        first = latest.date() - timedelta(days=days - 1)
        since = state.history_start(
            datetime.combine(first, day_start()), label_delay_days(artifact)
        )
        payments = load_payments(db, since)
        labels = {lb.transaction_id: lb.is_fraud for lb in state.load_labels(db)}
    finally:
        db.dispose()
    decided = []
    for policy in (base, candidate):
        scorer = Scorer(artifact, engine_for(artifact, policy), policy)
        decided.append(run_backtest(scorer, payments, settings.batch_size, labels))
    report = compare(payments, decided[0], decided[1], labels, subject, first)
    return report, what, first, latest.date(), current.version
