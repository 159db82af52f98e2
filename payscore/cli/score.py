"""``payscore score``: backtest a file of payments with the production Scorer."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import typer
from rich.table import Table

from payscore.cli.common import console, err_console, settings_from
from payscore.core import backtest
from payscore.core.decision import STATUSES, Decision
from payscore.core.schema import Payment
from payscore.errors import InputError

log = logging.getLogger(__name__)
SHOWN_REJECTS = 10


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
) -> None:
    """Backtest: score a file of payments with the same engine, model, rules and decisions.

    Rows that fail validation (or repeat a transaction id) are not scored: they are listed
    with their line number and, with --rejects, written to a file. Valid payments are scored
    in event-time order; the output is in that order.
    """
    from payscore.core.model import load_artifact
    from payscore.pipeline import build_scorer

    settings = settings_from(ctx, model_path=model)
    backtest.check_file(input, backtest.MAX_INPUT_BYTES)
    if labels is not None:
        backtest.check_file(labels, backtest.MAX_INPUT_BYTES)
    for path in (output, rejects):
        if path is not None:
            backtest.check_output(path)
    artifact = load_artifact(settings.model_path)

    label_file = backtest.read_labels(labels) if labels is not None else None
    data = backtest.read_input(input)
    _report_rejects(data.rejected, rejects)
    if data.bad_labels and label_file is None:
        err_console.print(f"warning: {data.bad_labels} unreadable is_fraud values ignored")
    truth = label_file if label_file is not None else data.labels

    scorer = build_scorer(settings, artifact)
    payments = backtest.event_order(data.payments)
    if truth:
        backtest.feed_labels(scorer, payments, truth)
    decisions = backtest.run_backtest(scorer, payments, settings.batch_size)
    backtest.write_decisions(output, decisions)

    counts = Counter(d.status for d in decisions)
    summary = ", ".join(f"{counts[s]:,} {s.lower()}" for s in STATUSES)
    console.print(
        f"scored {len(decisions):,} payments with model {artifact.version} ({summary}); "
        f"{len(data.rejected):,} rows rejected; decisions in {output}",
        highlight=False,
    )
    labelled = [d for d in decisions if d.transaction_id in truth]
    if labelled:
        _report_quality(labelled, payments, truth)


def _report_rejects(rejected: Sequence[backtest.Rejected], path: str | None) -> None:
    for r in rejected[:SHOWN_REJECTS]:
        err_console.print(f"line {r.line}: {r.kind}: {r.message}", highlight=False, markup=False)
    if len(rejected) > SHOWN_REJECTS:
        more = len(rejected) - SHOWN_REJECTS
        hint = "" if path else " (use --rejects FILE to keep them all)"
        err_console.print(f"... and {more:,} more rejected rows{hint}", highlight=False)
    if path is None:
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("line", "kind", "field", "message"))
            writer.writerows((r.line, r.kind, r.field or "", r.message) for r in rejected)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e


def _report_quality(
    decisions: Sequence[Decision], payments: Sequence[Payment], truth: Mapping[str, bool]
) -> None:
    """Model metrics (AUC ROC, AP, CP@100) and the confusion of statuses against labels."""
    import numpy as np

    from payscore.core import metrics

    by_id = {p.transaction_id: p for p in payments}
    rows = [by_id[d.transaction_id] for d in decisions]
    try:
        values = metrics.evaluate(
            np.array([truth[d.transaction_id] for d in decisions], dtype=np.int64),
            np.array([d.score for d in decisions], dtype=np.float64),
            np.array([int(p.event_time.timestamp() // 86_400) for p in rows]),
            np.array([p.customer_id for p in rows], dtype=object),
        )
    except ValueError as e:  # e.g. no fraud at all among the labelled payments
        console.print(f"no model metrics: {e}", highlight=False)
    else:
        console.print(
            f"AUC ROC {values['auc_roc']:.3f}   average precision "
            f"{values['average_precision']:.3f}   card precision@100 "
            f"{values['card_precision_at_100']:.3f}   ({len(decisions):,} labelled payments)",
            highlight=False,
        )
    table = Table(title="Decisions against labels")
    for column in ("status", "payments", "fraud", "genuine", "fraud rate", "share of frauds"):
        table.add_column(column, justify="left" if column == "status" else "right")
    confusion = backtest.status_confusion(decisions, truth)
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
