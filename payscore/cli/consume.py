"""``payscore consume``."""

from __future__ import annotations

import typer

from payscore.cli.common import (
    BootstrapServers,
    DatabaseUrl,
    MetricsPort,
    console,
    err_console,
    settings_from,
)
from payscore.pipeline import build_scorer, register_model

#: A stop (SIGTERM/SIGINT) that left taken messages uncommitted: they are read again.
EXIT_UNFINISHED = 4

__all__ = ["build_scorer", "consume", "register", "register_model"]


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)


def consume(
    ctx: typer.Context,
    batch_size: int = typer.Option(
        None, "--batch-size", help="Payments per batch. Env: PAYSCORE_BATCH_SIZE."
    ),
    max_wait_ms: int = typer.Option(
        None,
        "--max-wait-ms",
        help="Longest wait in one poll when no message is available. Env: PAYSCORE_MAX_WAIT_MS.",
    ),
    group: str = typer.Option(
        None, "--group", help="Consumer group id. Env: PAYSCORE_CONSUMER_GROUP."
    ),
    topic: str = typer.Option(None, "--topic", help="Input topic. Env: PAYSCORE_INPUT_TOPIC."),
    bootstrap_servers: BootstrapServers = None,
    database_url: DatabaseUrl = None,
    model: str = typer.Option(
        None, "--model", help="Model artifact path. Env: PAYSCORE_MODEL_PATH."
    ),
    max_messages: int = typer.Option(
        None, "--max-messages", min=1, help="Exit after deciding this many payments."
    ),
    idle_exit: float = typer.Option(
        None, "--idle-exit", min=0.1, help="Exit after this many seconds without messages."
    ),
    metrics_port: MetricsPort = None,
) -> None:
    """Consume payments from Kafka, score them, and store every decision exactly once.

    Exit codes: 0 stopped with everything committed; 1 error (service, model);
    2 bad setting or flag; 3 dead letters cannot be published; 4 stopped while
    the database or broker was down: the messages taken are read again.
    """
    from payscore.stream.consumer import build_consumer_app

    settings = settings_from(
        ctx,
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        consumer_group=group,
        input_topic=topic,
        kafka_bootstrap_servers=bootstrap_servers,
        database_url=database_url,
        model_path=model,
        metrics_port=metrics_port,
    )
    app = build_consumer_app(settings, max_messages=max_messages, idle_exit_s=idle_exit)
    server = None
    try:
        if settings.metrics_port is not None:
            from payscore.stream.metrics import MetricsServer

            server = MetricsServer(app.consumer.stats, app.artifact.version, settings.metrics_port)
        app.consumer.install_signal_handlers()
        console.print(
            f"consuming {settings.input_topic} as group {settings.consumer_group} "
            f"with model {app.artifact.version}",
            highlight=False,
            markup=False,
        )
        result = app.consumer.run()
    finally:
        if server is not None:
            server.close()
        app.close()
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.by_status.items())) or "none"
    console.print(
        f"decided {result.decided} ({statuses}); duplicates {result.duplicates}; "
        f"dead letters {result.dead_letters}; {result.rate:.0f} payments/s",
        highlight=False,
        markup=False,
    )
    if result.unfinished:
        err_console.print(
            f"stopped before finishing: {result.unfinished} "
            f"message{'s' if result.unfinished != 1 else ''} not committed, read again by "
            f"the next consumer",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_UNFINISHED)
