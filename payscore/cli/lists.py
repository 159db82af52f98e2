"""``payscore lists add|remove|show``: allow and block lists of payment-field values.

A list is named and holds values of one payment field (customer_id, terminal_id, country,
merchant_category, ...). A rule of kind ``in_list`` with ``list = "NAME"`` uses it; its action
makes it an allow list (APPROVE) or a block list (DECLINE). See docs/rules.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from payscore.cli.common import DatabaseUrl
from payscore.cli.rules import Actor, Reason, _print, actor_of, open_store, with_store

MAX_VALUES = 10_000  # per command


def register(app: typer.Typer) -> None:
    app.info.name = "lists"
    app.callback()(lists)
    app.command("add")(add)
    app.command("remove")(remove)
    app.command("show")(show)


def lists() -> None:
    """Manage allow/block lists: add or remove values, show a list or every list.

    Each change is a new policy version with an audit row per value (payscore rules history).
    """


def _values(values: list[str]) -> list[str]:
    from payscore.errors import InputError

    if len(values) > MAX_VALUES:
        raise InputError(f"at most {MAX_VALUES} values per command")
    return values


def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="List name (a-z, 0-9, _).")],
    values: Annotated[list[str], typer.Argument(help="Values to add.")],
    field: str = typer.Option(None, "--field", help="Payment field of a new list's values."),
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add values to a list (a new list needs --field)."""
    who = actor_of(actor)
    added, version = with_store(
        ctx, database_url, lambda _, s: s.add_entries(name, field, _values(values), who, reason)
    )
    _print(f"added {len(added)} to list {name}; policy version {version}")


def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="List name.")],
    values: Annotated[list[str], typer.Argument(help="Values to remove.")],
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove values from a list."""
    who = actor_of(actor)
    gone, version = with_store(
        ctx, database_url, lambda _, s: s.remove_entries(name, _values(values), who, reason)
    )
    _print(f"removed {len(gone)} from list {name}; policy version {version}")


def show(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="List name (default: a summary of every list)."),
    database_url: DatabaseUrl = None,
) -> None:
    """Show a list's field and values, or every list with its size."""
    _, store = open_store(ctx, database_url)
    try:
        if name is None:
            for list_name, field, count in store.list_summaries():
                _print(f"{list_name} ({field}): {count} values")
            return
        stored = store.stored_list(name)
    finally:
        store.engine.dispose()
    _print(f"{stored.name} ({stored.field}): {len(stored.values)} values")
    for value in sorted(stored.values):
        _print(value)
