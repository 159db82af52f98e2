"""``payscore train``: train the fraud model, print its test metrics, save the artifact."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from payscore.cli.common import console, err_console, settings_from
from payscore.cli.display import progress_bar, report_rejects
from payscore.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    ctx: typer.Context,
    data: str = typer.Option(
        None,
        "--data",
        help="Labelled payments (CSV or JSON lines, as for score) to train on instead of the "
        "simulated world; bad rows are skipped and listed (see docs/model.md).",
    ),
    rejects: str = typer.Option(
        None, "--rejects", help="With --data: CSV to write rejected rows to (line, kind, ...)."
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write the artifact. Default: the model_path setting "
        "(env PAYSCORE_MODEL_PATH).",
    ),
    baseline: bool = typer.Option(
        False, "--baseline", help="Train the handbook's random-forest baseline instead."
    ),
) -> None:
    """Train the fraud model (simulated world by default) and print its test metrics."""
    # Heavy (scikit-learn, pandas, numba): only when the command runs, never for --help.
    from payscore.core import paymentfile, training
    from payscore.core.model import save_artifact

    settings = settings_from(ctx, model_path=output)
    if data and not Path(data).is_file():  # fail before the progress display starts
        raise InputError(f"--data: no such file {data}")
    if rejects is not None:
        if not data:
            raise typer.BadParameter(
                "needs --data (the simulated world has no bad rows)", param_hint="--rejects"
            )
        paymentfile.check_output(rejects)
    started = time.perf_counter()
    rejected = None
    with progress_bar(err_console) as progress:
        if data:
            labelled = training.read_history(data, progress)
            rejected = labelled.rejected
            report_rejects(err_console, rejected, rejects)
            artifact, metrics = training.train_on_file(labelled, progress, baseline=baseline)
        else:
            artifact, metrics = training.train_default_model(progress, baseline=baseline)
    digest = save_artifact(artifact, settings.model_path, key=settings.model_key)
    elapsed = time.perf_counter() - started

    meta = artifact.metadata
    period = meta["training_period"]
    table = Table(title=f"Test period {period['test'][0]} .. {period['test'][1]}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("AUC ROC", f"{metrics['auc_roc']:.4f}")
    table.add_row("Average precision", f"{metrics['average_precision']:.4f}")
    table.add_row("Card Precision@100", f"{metrics['card_precision_at_100']:.4f}")
    console.print(table)
    console.print(
        f"model {meta['model_type']} trained on {period['train_payments']:,} payments "
        f"({period['train'][0]} .. {period['train'][1]}); thresholds review "
        f"{meta['thresholds']['review']:.4f}, decline {meta['thresholds']['decline']:.4f}",
        highlight=False,
        markup=False,  # the artifact's own words, not styles
    )
    if rejected is not None:
        console.print(
            f"{paymentfile.plural(len(rejected), 'row')} of {data} rejected (not trained on)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"saved {settings.model_path} (version {artifact.version}) in {elapsed:.0f} s",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    signed = "signed with model_key" if settings.model_key is not None else "not signed"
    console.print(f"digest {digest} ({signed})", highlight=False, markup=False, soft_wrap=True)
    if settings.model_sha256 is not None and settings.model_sha256.lower() != digest:
        err_console.print(
            "note: model_sha256 pins another model; set it to this digest to load this one",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
