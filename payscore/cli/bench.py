"""``payscore bench``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)


def bench_cmd(
    count: int = typer.Option(50000, "--count", help="Payments to push through."),
) -> None:
    """End-to-end benchmark against the configured broker and database."""
    raise PayscoreError("payscore bench is not implemented yet in this version")
