"""``payscore config``: the effective configuration and where each value came from."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from payscore.cli.common import console, loaded_from


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)


def show_config(ctx: typer.Context) -> None:
    """Print the effective configuration, secrets masked, with the source of every value."""
    loaded = loaded_from(ctx)
    table = Table(title="payscore configuration")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for name, value, source in loaded.rows():
        table.add_row(name, escape(value), escape(source))  # values and paths are the user's
    console.print(table)
