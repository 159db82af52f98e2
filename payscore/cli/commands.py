"""The subcommands, one module each, imported only when that command runs or shows its help.

Importing every command module costs about 2 s (scikit-learn, scipy, pandas, SQLAlchemy,
kafka-python), which ``payscore --help`` and ``--version`` need none of. The group lists the
commands from the one-line summaries below instead; ``tests/cli/test_lazy.py`` holds each equal
to the first line of its command's own help, so the two cannot drift.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

#: name -> (module defining ``register(app)``, summary shown by ``payscore --help``), in the
#: order of that listing.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": (
        "payscore.cli.config_cmd",
        "Print the effective configuration, secrets masked, with the source of every value.",
    ),
    "initdb": (
        "payscore.cli.initdb",
        "Create the decisions schema (tables and indexes); running it again is harmless.",
    ),
    "train": (
        "payscore.cli.train",
        "Train the fraud model (simulated world by default) and print its test metrics.",
    ),
    "model": (
        "payscore.cli.model",
        "Show a model's metadata and digest without unpickling it, or verify that it is trusted.",
    ),
    "models": (
        "payscore.cli.models",
        "List registered models, promote one to champion, set a challenger, or roll back.",
    ),
    "score": (
        "payscore.cli.score",
        "Backtest: score a file of payments with the same engine, model, rules and decisions.",
    ),
    "rules": (
        "payscore.cli.rules",
        "Manage live rules: list, add, disable, enable, show, history, and test one on history.",
    ),
    "lists": (
        "payscore.cli.lists",
        "Manage allow/block lists: add or remove values, show a list or every list.",
    ),
    "consume": (
        "payscore.cli.consume",
        "Consume payments from Kafka, score them, and store every decision exactly once.",
    ),
    "produce": (
        "payscore.cli.produce",
        "Stream payments (simulated by default) into the input topic.",
    ),
    "replay-dlq": (
        "payscore.cli.replay",
        "Re-publish dead letters to their source topic once their cause is fixed.",
    ),
    "demo": (
        "payscore.cli.demo",
        "Run the whole pipeline in-process on the simulated stream into SQLite; no servers.",
    ),
    "dashboard": (
        "payscore.cli.dashboard",
        "Start the Streamlit monitoring dashboard on the decisions database (Ctrl-C stops it).",
    ),
    "bench": (
        "payscore.cli.bench",
        "End-to-end benchmark against the configured broker and database (scratch copies).",
    ),
}


def load(name: str) -> Any:
    """Import the module of command ``name`` and build its click command."""
    module = importlib.import_module(COMMANDS[name][0])
    single = typer.Typer(add_completion=False)
    module.register(single)
    command = typer.main.get_command(single)
    # get_params, not params: it includes (and caches) the --help option.
    untyped_flags(command.get_params(typer.Context(command, info_name=name)))
    return command


def untyped_flags(params: Iterable[Any]) -> None:
    """Show no value type after a flag (``--dry-run``, ``--help``): a flag takes no value.

    typer 0.29 prints every option's type in help, ``<bool>`` for flags too, so flags read as if
    they wanted an argument. An empty metavar blanks that column for flags only.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Commands(MutableMapping[str, Any]):
    """The group's name -> command mapping; a command is built the first time it is looked up."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = dict(built)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))

    def is_built(self, name: str) -> bool:
        return name in self._built


class LazyGroup(TyperGroup):
    """A typer group whose subcommands are imported on use and listed from their summaries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if self._listing and isinstance(commands, _Commands) and not commands.is_built(cmd_name):
            if cmd_name in COMMANDS:
                return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return super().get_command(ctx, cmd_name)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        untyped_flags(params)
        return params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
