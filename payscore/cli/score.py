"""``payscore score``: backtest a file of payments with the production Scorer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payscore.cli.common import console, err_console, settings_from
from payscore.cli.display import progress_bar, report_rejects

if TYPE_CHECKING:
    from payscore.core.backtest import Quality

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)


def score_cmd(
    ctx: typer.Context,
    input: str = typer.Option(
        ..., "--input", "-i", help="CSV (Payment field names as header) or JSON-lines payments."
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="CSV to write: transaction_id, score, status, reason_codes."
    ),
    labels: str = typer.Option(
        None, "--labels", help="CSV of transaction_id,is_fraud (else an is_fraud input column)."
    ),
    model: str = typer.Option(
        None, "--model", help="Model artifact. Env: PAYSCORE_MODEL_PATH (setting model_path)."
    ),
    rejects: str = typer.Option(
        None, "--rejects", help="CSV to write rejected rows to: line, kind, field, message."
    ),
    metrics_from: str = typer.Option(
        None,
        "--metrics-from",
        help="Metrics only over labelled payments on or after this UTC date (YYYY-MM-DD).",
    ),
    metrics_to: str = typer.Option(
        None,
        "--metrics-to",
        help="Metrics only over labelled payments on or before this UTC date (YYYY-MM-DD).",
    ),
) -> None:
    """Backtest: score a file of payments with the same engine, model, rules and decisions.

    Rows that fail validation (or repeat a transaction id) are not scored: they are listed
    with their line number and, with --rejects, written to a file. Valid payments are scored
    in event-time order; the output is in that order. With labels, metrics are computed over
    every labelled payment of --metrics-from .. --metrics-to (default: all), and say so.
    """
    from payscore.core import backtest, paymentfile
    from payscore.core.decision import STATUSES
    from payscore.core.model import load_artifact
    from payscore.pipeline import build_scorer

    since = _parse_date(metrics_from, "--metrics-from")
    until = _parse_date(metrics_to, "--metrics-to")
    if since and until and since > until:
        raise typer.BadParameter("is after --metrics-to", param_hint="--metrics-from")
    settings = settings_from(ctx, model_path=model)
    paymentfile.check_file(input)
    if labels is not None:
        paymentfile.check_file(labels)
    for path in (output, rejects):
        if path is not None:
            paymentfile.check_output(path)
    artifact = load_artifact(settings.model_path, settings)

    label_file = backtest.read_labels(labels) if labels is not None else None
    with progress_bar(err_console) as progress:
        data = backtest.read_input(input, progress=progress)
        report_rejects(err_console, data.rejected, rejects)
        if not data.payments:
            raise paymentfile.nothing_usable(input, data.rejected)
        truth = label_file if label_file is not None else data.labels
        scorer = build_scorer(settings, artifact)
        payments = backtest.event_order(data.payments)
        decisions = backtest.run_backtest(
            scorer, payments, settings.batch_size, labels=truth, progress=progress
        )
    backtest.write_decisions(output, decisions)

    counts = Counter(d.status for d in decisions)
    summary = ", ".join(f"{counts[s]:,} {s.lower()}" for s in STATUSES)
    console.print(
        f"scored {paymentfile.plural(len(decisions), 'payment')} with model {artifact.version} "
        f"({summary}); {paymentfile.plural(len(data.rejected), 'row')} rejected; "
        f"decisions in {output}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if truth:
        trained = backtest.training_dates(artifact.metadata)
        result = backtest.quality(decisions, payments, truth, since, until, trained)
        _report_quality(result, truth, since, until, trained)


def _parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("expected a date such as 2018-08-08", param_hint=flag) from None


def _report_quality(
    result: Quality,
    truth: Mapping[str, bool],
    since: date | None,
    until: date | None,
    trained: tuple[date, date] | None,
) -> None:
    """Model metrics (AUC ROC, AP, CP@100) and the confusion of statuses against labels,
    each saying which payments they were computed on."""
    from payscore.core import backtest
    from payscore.core.decision import STATUSES
    from payscore.core.paymentfile import plural

    if not result.decisions:
        period = f"{since or 'the start'} .. {until or 'the end'}"
        console.print(
            f"no labelled payments from {period}: no metrics", highlight=False, markup=False
        )
        return
    console.print(
        f"metrics over {plural(len(result.decisions), 'labelled payment')} "
        f"from {result.first} to {result.last} (UTC event dates; all labelled payments in that "
        "period, not filtered for cards already known compromised)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if result.metrics is None:
        console.print(f"no model metrics: {result.why_not}", highlight=False, markup=False)
    else:
        values = result.metrics
        console.print(
            f"AUC ROC {values['auc_roc']:.3f}   average precision "
            f"{values['average_precision']:.3f}   card precision@100 "
            f"{values['card_precision_at_100']:.3f}",
            highlight=False,
            markup=False,
        )
    if result.in_training and trained is not None:
        n = result.in_training
        console.print(
            f"note: {n:,} of them {'is' if n == 1 else 'are'} in the model's training and "
            f"validation period {trained[0]} .. {trained[1]}, so these metrics are optimistic; "
            f"--metrics-from {trained[1] + timedelta(days=1)} leaves them out",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    table = Table(title="Decisions against labels")
    for column in ("status", "payments", "fraud", "genuine", "fraud rate", "share of frauds"):
        table.add_column(column, justify="left" if column == "status" else "right")
    confusion = backtest.status_confusion(result.decisions, truth)
    total_fraud = sum(row[True] for row in confusion.values())
    for status in STATUSES:
        fraud, genuine = confusion[status][True], confusion[status][False]
        n = fraud + genuine
        table.add_row(
            status,
            f"{n:,}",
            f"{fraud:,}",
            f"{genuine:,}",
            f"{fraud / n:.1%}" if n else "-",
            f"{fraud / total_fraud:.1%}" if total_fraud else "-",
        )
    console.print(table)
