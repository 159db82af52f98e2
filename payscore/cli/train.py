"""``payscore train``: train the fraud model, print its test metrics, save the artifact."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from payscore.cli.common import console, settings_from
from payscore.core.model import save_artifact
from payscore.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    ctx: typer.Context,
    data: str = typer.Option(
        None,
        "--data",
        help="Labelled CSV to train on instead of the simulated world (see docs/model.md).",
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
    from payscore.core import training  # heavy imports only when the command runs

    settings = settings_from(ctx, model_path=output)
    if data and not Path(data).is_file():  # fail before the progress display starts
        raise InputError(f"--data: no such file {data}")
    started = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress(stage: str, fraction: float) -> None:
            bar.update(task, description=stage, completed=fraction)

        if data:
            artifact, metrics = training.train_from_csv(data, progress, baseline=baseline)
        else:
            artifact, metrics = training.train_default_model(progress, baseline=baseline)
    save_artifact(artifact, settings.model_path)
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
    )
    console.print(
        f"saved {settings.model_path} (version {artifact.version}) in {elapsed:.0f} s",
        highlight=False,
    )
