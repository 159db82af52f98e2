"""``payscore score``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)


def score_cmd(
    input: str = typer.Option(..., "--input", help="CSV or JSON-lines file of payments."),
    output: str = typer.Option(..., "--output", help="CSV file to write decisions to."),
) -> None:
    """Backtest: score a file of payments with the same engine, model, rules and decisions."""
    raise PayscoreError("payscore score is not implemented yet in this version")
