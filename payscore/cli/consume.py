"""``payscore consume``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)


def consume(
    batch_size: int = typer.Option(
        None, "--batch-size", help="Payments per batch. Env: PAYSCORE_BATCH_SIZE."
    ),
) -> None:
    """Consume payments from Kafka, score them, and store every decision."""
    raise PayscoreError("payscore consume is not implemented yet in this version")
