"""``payscore replay-dlq``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("replay-dlq")(replay_dlq)


def replay_dlq(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would be replayed; change nothing."
    ),
) -> None:
    """Re-publish dead letters to their source topic once their cause is fixed."""
    raise PayscoreError("payscore replay-dlq is not implemented yet in this version")
