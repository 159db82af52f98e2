"""``payscore demo``: the whole pipeline in-process on the simulated world; no servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from payscore.cli.common import DatabaseUrl, console, err_console, settings_from
from payscore.cli.display import progress_bar
from payscore.errors import InputError

if TYPE_CHECKING:  # numpy, pandas, scikit-learn, SQLAlchemy: when the demo runs, not for --help
    import pandas as pd

    from payscore.core.artifact import Trust
    from payscore.core.model import ModelArtifact
    from payscore.core.paymentfile import Progress
    from payscore.pipeline import Pipeline

DEMO_TOPIC = "demo"
DEMO_LABELS_TOPIC = "demo.labels"
DEMO_GROUP = "payscore-demo"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    ctx: typer.Context,
    count: int = typer.Option(
        20_000, "--count", min=1, max=1_000_000, help="Payments to stream through the pipeline."
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", help="Payments per batch. Env: PAYSCORE_BATCH_SIZE."
    ),
    database_url: DatabaseUrl = None,
    model: str = typer.Option(
        None, "--model", help="Model artifact (trained here if missing). Env: PAYSCORE_MODEL_PATH."
    ),
) -> None:
    """Run the whole pipeline in-process on the simulated stream into SQLite; no servers."""
    import numpy as np

    from payscore.core import protocol, simulator, training
    from payscore.pipeline import Pipeline, build_scorer, register_model
    from payscore.store.engine import make_engine
    from payscore.store.initdb import create_schema
    from payscore.store.writer import DecisionWriter

    settings = settings_from(
        ctx, batch_size=batch_size, database_url=database_url, model_path=model
    )
    artifact = _model(settings.model_path, settings)
    console.print("loading the simulated world (generated once, then cached)...")
    world = simulator.load_world()
    days = world["TX_TIME_DAYS"].to_numpy()
    start_day = protocol.TEST_END_DAY  # after everything the default model learned from
    start = int(np.searchsorted(days, start_day))
    stop = min(start + count, len(world))
    if stop <= start:
        raise InputError("the simulated world has no payments after the training period")

    scorer = build_scorer(settings, artifact)
    warm_from = int(np.searchsorted(days, start_day - 30 - scorer.engine.label_delay_days))
    console.print(f"warming feature state on {start - warm_from:,} earlier payments...")
    history = training.History.from_world(world.iloc[warm_from:start])
    with _stages() as progress:
        training.compute_features(history, engine=scorer.engine, progress=progress)

    db = make_engine(settings)
    try:
        create_schema(db)
        writer = DecisionWriter(db)
        register_model(writer, artifact)
        pipeline = Pipeline(scorer, writer, DEMO_GROUP, labels_topic=DEMO_LABELS_TOPIC)
        _stream(pipeline, world.iloc[start:stop], start, settings.batch_size)
    finally:
        db.dispose()


@contextmanager
def _stages(announce: bool = False) -> Iterator[Progress]:
    """A ``progress(stage, done, total)`` callback for the demo's long stages: rich bars with
    counts and rates on a terminal. Elsewhere (tests, CI logs, pipes) nothing is redrawn;
    with ``announce``, one line as each stage starts, so a log shows where minutes went."""
    with progress_bar(err_console) as bar:
        if err_console.is_terminal or not announce:
            yield bar
            return
        shown: set[str] = set()

        def first_line(stage: str, done: int, total: int | None) -> None:
            if stage not in shown:
                shown.add(stage)
                console.print(f"  {stage}...", highlight=False, markup=False)

        yield first_line


def _model(path: str, trust: Trust) -> ModelArtifact:
    from payscore.core import training
    from payscore.core.model import load_artifact, save_artifact

    if Path(path).exists():
        return load_artifact(path, trust)
    console.print(  # the path is the user's: "[" is not markup
        f"no model at {path}: training the default model (a few minutes, once)...",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    with _stages(announce=True) as progress:
        artifact, metrics = training.train_default_model(progress)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_artifact(artifact, path, key=trust.model_key)
    console.print(
        "  trained: "
        + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        + f"; saved to {path}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return artifact


def _stream(pipeline: Pipeline, df: pd.DataFrame, first_offset: int, batch_size: int) -> None:
    """Feed the slice through the pipeline in batches, labels 7 days late, then summarise.

    Each fraud's chargeback goes through the pipeline as a labels-topic message (known a week
    after the payment), so it reaches the engine and ``fraud_labels`` exactly as
    ``payscore consume`` would take it from the labels topic.
    """
    from payscore.core import simulator
    from payscore.core.schema import payment_to_json
    from payscore.pipeline import RawMessage
    from payscore.stream.producer import label_message

    payments = simulator.to_payments(df)
    frauds = df["TX_FRAUD"].to_numpy().astype(bool)
    delay = timedelta(days=pipeline.scorer.engine.label_delay_days)
    console.print(f"streaming {len(payments):,} payments through validate -> score -> store...")
    started = time.monotonic()
    decided = skipped = 0
    flagged_fraud = flagged = 0
    by_status: dict[str, int] = {}
    with _stages() as progress:
        for lo in range(0, len(payments), batch_size):
            chunk = payments[lo : lo + batch_size]
            messages: list[RawMessage] = []
            for i, (p, fraud) in enumerate(zip(chunk, frauds[lo : lo + batch_size], strict=True)):
                offset = first_offset + lo + i
                value = payment_to_json(p)
                messages.append(RawMessage(DEMO_TOPIC, 0, offset, p.customer_id.encode(), value))
                if fraud:  # the payment's offset keeps label offsets unique, the same every run
                    value = label_message(p.transaction_id, True, p.event_time + delay)
                    key = p.transaction_id.encode()
                    messages.append(RawMessage(DEMO_LABELS_TOPIC, 0, offset, key, value))
            batch, result = pipeline.process(messages)
            decided += result.decided
            skipped += result.skipped_replayed
            fraud_ids = {p.transaction_id for p, f in zip(chunk, frauds[lo:], strict=False) if f}
            for p, d in batch.decided:
                by_status[d.status] = by_status.get(d.status, 0) + 1
                if d.status != "APPROVED":
                    flagged += 1
                    flagged_fraud += p.transaction_id in fraud_ids
            progress("streaming payments", lo + len(chunk), len(payments))
    elapsed = time.monotonic() - started
    total_fraud = int(frauds.sum())
    recall = flagged_fraud / total_fraud if total_fraud else 0.0
    precision = flagged_fraud / flagged if flagged else 0.0
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items()))
    console.print(
        f"decided {decided:,} payments in {elapsed:.1f} s "
        f"({len(payments) / max(elapsed, 1e-9):,.0f} payments/s): {statuses}",
        highlight=False,
        soft_wrap=True,  # one line in logs too, not cut at 80 columns
    )
    if skipped:
        console.print(f"{skipped:,} were already in the database from an earlier run: skipped")
    console.print(
        f"fraud caught (REVIEW or DECLINED): {flagged_fraud} of {total_fraud} "
        f"(recall {recall:.1%}, precision {precision:.1%})",
        highlight=False,
    )
    console.print("see the decisions live: payscore dashboard")
