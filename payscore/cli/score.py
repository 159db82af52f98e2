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
    from payscore.core.decision import Decision
    from payscore.core.explain import Reason
    from payscore.core.scoring import Scorer

log = logging.getLogger(__name__)

MAX_TOP_REASONS = 10
SHOWN_RISKIEST = 10


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)


def score_cmd(
    ctx: typer.Context,
    input: str = typer.Option(
        ..., "--input", "-i", help="CSV (Payment field names as header) or JSON-lines payments."
    ),
    output: str = typer.Option(
        ...,
        "--output",
        "-o",
        help="CSV to write: transaction_id, score, status, reason_codes, explanation.",
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
    explain: bool = typer.Option(
        None,
        "--explain/--no-explain",
        help="Top reasons of each payment, in the output's explanation column and for the "
        "riskiest flagged on screen (default: on when the model can be explained).",
        show_default=False,
    ),
    top_reasons: int = typer.Option(
        3, "--top-reasons", help=f"Reasons per flagged payment (1 to {MAX_TOP_REASONS})."
    ),
) -> None:
    """Backtest: score a file of payments with the same engine, model, rules and decisions.

    Rows that fail validation (or repeat a transaction id) are not scored: they are listed
    with their line number and, with --rejects, written to a file. Valid payments are scored
    in event-time order; the output is in that order. With labels, metrics are computed over
    every labelled payment of --metrics-from .. --metrics-to (default: all), and say so.
    Every payment is explained: the features that raised its score most, as reason texts,
    the same as the consumer stores (--no-explain leaves them out).
    """
    from payscore.core import backtest, paymentfile
    from payscore.core.decision import STATUSES
    from payscore.core.model import load_artifact
    from payscore.pipeline import build_scorer

    since = _parse_date(metrics_from, "--metrics-from")
    until = _parse_date(metrics_to, "--metrics-to")
    if since and until and since > until:
        raise typer.BadParameter("is after --metrics-to", param_hint="--metrics-from")
    if not 1 <= top_reasons <= MAX_TOP_REASONS:
        raise typer.BadParameter(
            f"must be from 1 to {MAX_TOP_REASONS}, got {top_reasons}", param_hint="--top-reasons"
        )
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
        explained: dict[str, list[Reason]] | None = {} if _can_explain(scorer, explain) else None
        payments = backtest.event_order(data.payments)
        decisions = backtest.run_backtest(
            scorer,
            payments,
            settings.batch_size,
            labels=truth,
            progress=progress,
            explained=explained,
            top=top_reasons,
        )
    backtest.write_decisions(output, decisions, explained)

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
    if explained is not None:
        _report_riskiest(decisions, explained)
    if truth:
        trained = backtest.training_dates(artifact.metadata)
        result = backtest.quality(decisions, payments, truth, since, until, trained)
        _report_quality(result, truth, since, until, trained)


def _can_explain(scorer: Scorer, wanted: bool | None) -> bool:
    """Whether to explain: --explain insists (a model that cannot be explained is an error),
    --no-explain refuses, and by default a model that cannot be is noted and scored anyway."""
    if wanted is False:
        return False
    import numpy as np

    from payscore.core.explain import NotExplainable, contributions

    names = scorer.engine.feature_names
    try:  # zero rows: checks the model and compiles the walk before the first batch
        contributions(scorer.artifact, names, np.empty((0, len(names))))
    except NotExplainable as e:
        if wanted:
            raise
        err_console.print(f"{e}: no explanations", highlight=False, markup=False)
        return False
    return True


def _report_riskiest(decisions: list[Decision], explained: dict[str, list[Reason]]) -> None:
    """The highest-scored flagged payments, one line each with their top reasons' texts."""
    from payscore.core.decision import APPROVED

    flagged = sorted(
        (d for d in decisions if d.status != APPROVED and d.transaction_id in explained),
        key=lambda d: -d.score,
    )
    if not flagged:
        return
    from payscore.core.explain import explanation_text

    shown = flagged[:SHOWN_RISKIEST]
    console.print(
        f"riskiest flagged payments ({len(shown):,} of {len(flagged):,}; every flagged "
        "payment's reasons are in the output's explanation column):",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for d in shown:
        texts = explanation_text(explained[d.transaction_id]) or "no feature raised it"
        console.print(
            f"  {d.transaction_id}  score {d.score:.3f}  {d.status}  "
            f"{','.join(d.reasons) or '-'}: {texts}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


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
