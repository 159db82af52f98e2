"""``payscore consume``."""

from __future__ import annotations

import json
from datetime import datetime

import typer

from payscore.cli.common import console, settings_from
from payscore.config import Settings
from payscore.core.model import ModelArtifact, load_artifact
from payscore.core.scoring import Scorer, engine_for
from payscore.pipeline import Pipeline
from payscore.store.engine import make_engine
from payscore.store.writer import DecisionWriter


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)


def build_scorer(settings: Settings, artifact: ModelArtifact) -> Scorer:
    """The Scorer for these settings (thresholds, rules) with a fresh feature engine."""
    return Scorer.from_settings_values(
        artifact,
        None,
        review_threshold=settings.review_threshold,
        decline_threshold=settings.decline_threshold,
        velocity_max_payments=settings.velocity_max_payments,
        velocity_window_seconds=settings.velocity_window_seconds,
        amount_review_limit=settings.amount_review_limit,
        amount_decline_limit=settings.amount_decline_limit,
    )


def register_model(writer: DecisionWriter, artifact: ModelArtifact) -> None:
    trained = artifact.metadata.get("trained_at")
    try:
        trained_at = datetime.fromisoformat(trained).replace(tzinfo=None) if trained else None
    except (TypeError, ValueError):
        trained_at = None
    writer.register_model(
        artifact.version,
        trained_at or datetime(1970, 1, 1),
        json.dumps(artifact.metadata, default=str, sort_keys=True),
    )


def consume(
    ctx: typer.Context,
    batch_size: int = typer.Option(
        None, "--batch-size", help="Payments per batch. Env: PAYSCORE_BATCH_SIZE."
    ),
    max_wait_ms: int = typer.Option(
        None, "--max-wait-ms", help="Longest wait to fill a batch. Env: PAYSCORE_MAX_WAIT_MS."
    ),
    group: str = typer.Option(
        None, "--group", help="Consumer group id. Env: PAYSCORE_CONSUMER_GROUP."
    ),
    topic: str = typer.Option(
        None, "--topic", help="Input topic. Env: PAYSCORE_INPUT_TOPIC."
    ),
    bootstrap_servers: str = typer.Option(
        None,
        "--bootstrap-servers",
        help="Kafka bootstrap servers. Env: PAYSCORE_KAFKA_BOOTSTRAP_SERVERS.",
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="SQLAlchemy database URL. Env: PAYSCORE_DATABASE_URL."
    ),
    model: str = typer.Option(
        None, "--model", help="Model artifact path. Env: PAYSCORE_MODEL_PATH."
    ),
    max_messages: int = typer.Option(
        None, "--max-messages", min=1, help="Exit after deciding this many payments."
    ),
    idle_exit: float = typer.Option(
        None, "--idle-exit", min=0.1, help="Exit after this many seconds without messages."
    ),
) -> None:
    """Consume payments from Kafka, score them, and store every decision exactly once."""
    from payscore.stream.consumer import StreamConsumer
    from payscore.stream.kafka import check_broker

    settings = settings_from(
        ctx,
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        consumer_group=group,
        input_topic=topic,
        kafka_bootstrap_servers=bootstrap_servers,
        database_url=database_url,
        model_path=model,
    )
    artifact = load_artifact(settings.model_path)
    scorer = build_scorer(settings, artifact)
    policy = scorer.policy

    db = make_engine(settings)
    try:
        writer = DecisionWriter(db)
        writer.ping()
        register_model(writer, artifact)
        check_broker(settings)
        pipeline = Pipeline(
            scorer,
            writer,
            settings.consumer_group,
            attempt_of=_attempt_of,
            labels_topic=settings.labels_topic or None,
        )
        consumer = StreamConsumer(
            settings,
            pipeline,
            db,
            lambda: engine_for(artifact, policy),
            max_messages=max_messages,
            idle_exit_s=idle_exit,
        )
        consumer.install_signal_handlers()
        console.print(
            f"consuming {settings.input_topic} as group {settings.consumer_group} "
            f"with model {artifact.version}",
            highlight=False,
        )
        result = consumer.run()
    finally:
        db.dispose()
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.by_status.items())) or "none"
    console.print(
        f"decided {result.decided} ({statuses}); duplicates {result.duplicates}; "
        f"dead letters {result.dead_letters}; {result.rate:.0f} payments/s",
        highlight=False,
    )


def _attempt_of(record: object) -> int:
    from payscore.stream.dlq import next_attempt

    return next_attempt(getattr(record, "headers", None))

