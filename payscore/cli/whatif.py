"""``payscore rules test``: replay stored history through the Scorer with a change, and count.

The current policy (settings plus enabled stored rules) and the candidate (a rule added, or
another review threshold) each decide the same stored payments with ``run_backtest``, the
production scoring path; ``core/policy_whatif.py`` compares the two per day. See docs/rules.md.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import time as day_start
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payscore.cli.common import console, settings_from
from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.config import Settings
    from payscore.core.policy_whatif import WhatIf


def run_whatif(
    ctx: typer.Context,
    file: str | None,
    rule_id: str | None,
    review_threshold: float | None,
    days: int,
    model: str | None,
    database_url: str | None,
) -> None:
    settings = settings_from(ctx, database_url=database_url, model_path=model)
    _show(*whatif(settings, file, rule_id, review_threshold, days))


def whatif(
    settings: Settings,
    file: str | None,
    rule_id: str | None,
    review_threshold: float | None,
    days: int,
) -> tuple[WhatIf, str, date, date, int | None]:
    """The report, what was tried, the first and last day replayed, the policy version."""
    from payscore.cli.rules import rule_from
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
            if file is not None:
                rule = rule_from(file, None, None, None, [], None).rule
            else:
                s = store.rule(str(rule_id))
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


def _show(report: WhatIf, what: str, first: date, last: date, version: int | None) -> None:
    table = Table(
        title=f"what-if: {what}, {first} .. {last} (event time), policy version {version}"
    )
    for name in ("day", "payments", "flagged", "labelled fraud", "extra review", "overlap"):
        table.add_column(name, justify="left" if name == "day" else "right")
    rows = [(str(day), c) for day, c in report.days.items()] + [("total", report.total)]
    for label, c in rows:
        table.add_row(
            label,
            f"{c.payments:,}",
            f"{c.flagged:,}",
            f"{c.flagged_fraud:,}",
            f"{c.extra_review:+,}",
            f"{c.overlap:,}",
        )
    console.print(table)
