"""``payscore rules test``: replay stored history through the Scorer with a change, and count.

The current policy (settings plus enabled stored rules) and the candidate (a rule added, or
another review threshold) each decide the same stored payments with ``run_backtest``, the
production scoring path; ``core/policy_whatif.py`` compares the two per day. See docs/rules.md.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payscore.cli.common import console, settings_from

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
    from payscore.livepolicy import replay

    if file is not None:
        rule = rule_from(file, None, None, None, [], None).rule
        return replay(settings, days, rule=rule)
    return replay(settings, days, rule_key=rule_id, review_threshold=review_threshold)


def _show(report: WhatIf, what: str, first: date, last: date, version: int | None) -> None:
    from payscore.livepolicy import REPORT_COLUMNS, report_rows

    table = Table(
        title=f"what-if: {what}, {first} .. {last} (event time), policy version {version}"
    )
    for name in ("day", *REPORT_COLUMNS):
        table.add_column(name, justify="left" if name == "day" else "right")
    for label, cells in report_rows(report):
        table.add_row(label, *cells)
    console.print(table)
