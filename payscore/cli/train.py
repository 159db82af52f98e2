"""``payscore train``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    data: str = typer.Option(
        None, "--data", help="Labelled CSV to train on instead of the simulated world."
    ),
) -> None:
    """Train the fraud model (simulated world by default) and print its test metrics."""
    raise PayscoreError("payscore train is not implemented yet in this version")
