"""``payscore dashboard``."""

from __future__ import annotations

import typer

from payscore.errors import PayscoreError


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
) -> None:
    """Start the Streamlit monitoring dashboard on the decisions database."""
    raise PayscoreError("payscore dashboard is not implemented yet in this version")
