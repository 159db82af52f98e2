"""The ``payscore`` command: global options, error handling, and the subcommands."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from payscore import __version__
from payscore.cli.commands import LazyGroup
from payscore.cli.common import err_console
from payscore.errors import PayscoreError


class _Group(LazyGroup):
    """Turns payscore's own errors into one line on stderr and an exit code, never a trace."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PayscoreError as e:
            # Escaped: a message quotes user text, and "[mysql]" or "pay[1].csv" is not markup.
            # A database failure is already in the one wording of store.engine.database_error.
            message = escape(str(e))
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="payscore",
    help="Real-time payment fraud scoring: Kafka in, model + rules, decisions in MySQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"payscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        envvar="PAYSCORE_CONFIG",
        help="TOML config file (default: payscore.toml if present). Env: PAYSCORE_CONFIG.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    source = ctx.get_parameter_source("config")
    # From PAYSCORE_CONFIG, load_settings reads it itself and names that variable in errors.
    from_env = source is not None and source.name == "ENVIRONMENT"
    ctx.obj = {"config_file": None if from_env else config}


def main() -> None:
    app()
