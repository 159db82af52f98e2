"""``payscore models list|register|promote|challenger|rollback``: the model registry."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

import typer
from rich.table import Table

from payscore.cli.common import DatabaseUrl, console, settings_from
from payscore.errors import InputError

VersionArg = typer.Argument(..., help="A model version, as `payscore models list` shows it.")


def register(app: typer.Typer) -> None:
    app.info.name = "models"
    app.callback()(models)
    for name, command in _COMMANDS.items():
        app.command(name)(command)


def models() -> None:
    """List registered models, promote one to champion, set a challenger, or roll back.

    `payscore train` registers every model it trains (status candidate). A model's file is
    checked as at load (digest, signature when model_key is set) before it takes a role.
    """


@dataclass(frozen=True)
class _KeyOnly:
    """Trust for promotions: the signature when model_key is set. A pinned model_sha256 names
    one model, not the registry's, so it is not applied here."""

    model_key: Any
    model_sha256: str | None = None


def _print(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def user() -> str:
    """Who is acting: the login name (recorded as trained_by / status_by)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    return (name or "unknown")[:64]


def _db(ctx: typer.Context, database_url: str | None) -> tuple[Any, Any]:
    from payscore.store.engine import make_engine

    settings = settings_from(ctx, database_url=database_url)
    return settings, make_engine(settings)


def list_(ctx: typer.Context, database_url: DatabaseUrl = None) -> None:
    """Every registered model, newest first: status, periods, test metrics, thresholds."""
    from payscore.store import registry

    _, db = _db(ctx, database_url)
    try:
        records = registry.list_models(db)
    finally:
        db.dispose()
    if not records:
        _print("no registered models (payscore train registers each model it trains)")
        return
    table = Table()
    for name in ("version", "status", "trained", "by", "train", "test", "AUC", "AP", "CP@100"):
        table.add_column(name, no_wrap=name in {"version", "status"})
    table.add_column("review/decline")
    for r in records:
        m, p = r.metrics, r.periods
        table.add_row(
            r.version,
            r.status,
            f"{r.trained_at:%Y-%m-%d %H:%M}",
            r.trained_by,
            " .. ".join(p.get("train", [])),
            " .. ".join(p.get("test", [])),
            *(f"{m[k]:.4f}" if k in m else "-" for k in _METRICS),
            f"{r.thresholds.get('review', 0):.4f}/{r.thresholds.get('decline', 0):.4f}",
        )
    console.print(table, markup=False, highlight=False)


_METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


def register_(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="The model file (its .json sidecar beside it)."),
    database_url: DatabaseUrl = None,
) -> None:
    """Register a model file (reads its JSON sidecar; nothing is unpickled)."""
    from payscore.store import registry

    _, db = _db(ctx, database_url)
    try:
        record, new = registry.register(db, path, user())
    finally:
        db.dispose()
    said = "registered" if new else "already registered"
    _print(f"{said}: model {record.version} ({record.status}) at {record.artifact_path}")


def promote(
    ctx: typer.Context, version: str = VersionArg, database_url: DatabaseUrl = None
) -> None:
    """Make a model the champion (the one that decides); the current champion is retired."""
    _said(version, "champion", _assign(ctx, version, database_url, "promote"), "retired")


def challenger(
    ctx: typer.Context, version: str = VersionArg, database_url: DatabaseUrl = None
) -> None:
    """Make a model the challenger (scored beside the champion, never deciding)."""
    before = _assign(ctx, version, database_url, "set_challenger")
    _said(version, "challenger", before, "is a candidate again")


def _said(version: str, role: str, before: Any, fate: str) -> None:
    _print(f"model {version} is the {role}" + (f"; {before.version} {fate}" if before else ""))


def _assign(ctx: typer.Context, version: str, database_url: str | None, action: str) -> Any:
    """``registry.promote`` or ``registry.set_challenger``, the file checked with model_key."""
    from payscore.store import registry

    settings, db = _db(ctx, database_url)
    try:
        change = getattr(registry, action)
        return change(db, _version(version), user(), _KeyOnly(settings.model_key))
    finally:
        db.dispose()


def rollback(ctx: typer.Context, database_url: DatabaseUrl = None) -> None:
    """Retire the champion and restore the champion it replaced."""
    from payscore.store import registry

    _, db = _db(ctx, database_url)
    try:
        restored, retired = registry.rollback(db, user())
    finally:
        db.dispose()
    _print(f"model {restored.version} is the champion again; {retired.version} retired")


def _version(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 64:
        raise InputError(f"{text[:70]!r} is not a model version (`payscore models list`)")
    return text


_COMMANDS: dict[str, Any] = {
    "list": list_,
    "register": register_,
    "promote": promote,
    "challenger": challenger,
    "rollback": rollback,
}
