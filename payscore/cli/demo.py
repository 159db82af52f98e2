"""``payscore demo``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    count: int = typer.Option(None, "--count", help="Payments to stream."),
) -> None:
    """Run the whole pipeline in-process on the simulated stream into SQLite; no servers."""
    raise PayscoreError("payscore demo is not implemented yet in this version")
