"""``payscore produce``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)


def produce(
    rate: float = typer.Option(100.0, "--rate", help="Payments per second."),
    count: int = typer.Option(None, "--count", help="Stop after this many payments."),
) -> None:
    """Stream payments (simulated by default) into the input topic."""
    raise PayscoreError("payscore produce is not implemented yet in this version")
