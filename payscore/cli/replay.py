"""``payscore replay-dlq``: re-publish dead letters to their source topic, each once."""

from __future__ import annotations

from datetime import datetime, timezone

import typer
from rich.markup import escape
from rich.table import Table

from payscore.cli.common import MetricsPort, console, err_console, settings_from
from payscore.cli.display import progress_bar
from payscore.stream.dlq import KINDS
from payscore.stream.kafka import quiet_client_logs
from payscore.stream.replay import (
    MALFORMED,
    REPLAY,
    ReplayFilter,
    ReplayResult,
    parked_topic,
    replay_dead_letters,
)

MAX_LISTED = 200
_KIND_HELP = f"Only dead letters of this error kind (repeatable): {', '.join(KINDS)}."


def register(app: typer.Typer) -> None:
    app.command("replay-dlq")(replay_dlq)


def _parse_time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "expected an ISO date or time such as 2024-05-01T12:00", param_hint=flag
        ) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def replay_dlq(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would be replayed; change nothing."
    ),
    kind: list[str] = typer.Option(  # noqa: B008 - typer's documented pattern for lists
        None,
        "--kind",
        metavar="<kind>",  # one kind per flag; typer would show <list[str]>
        help=_KIND_HELP,
    ),
    since: str = typer.Option(
        None, "--since", help="Only dead letters written at or after this ISO time (UTC)."
    ),
    until: str = typer.Option(
        None, "--until", help="Only dead letters written before this ISO time (UTC)."
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Replay at most this many."),
    metrics_port: MetricsPort = None,
) -> None:
    """Re-publish dead letters to their source topic once their cause is fixed."""
    unknown = sorted(set(kind or ()) - set(KINDS))
    if unknown:
        raise typer.BadParameter(
            f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}", param_hint="--kind"
        )
    filters = ReplayFilter(
        kinds=frozenset(kind) if kind else None,
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
        limit=limit,
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise typer.BadParameter("must be earlier than --until", param_hint="--since")
    settings = settings_from(ctx, metrics_port=metrics_port)
    quiet_client_logs(settings.log_level)
    from payscore.stream.metrics import ReplayCollector, serve_metrics

    result = ReplayResult()
    metrics = serve_metrics(ReplayCollector(result), settings.metrics_port)
    with metrics, progress_bar(err_console, unit="dead letters") as progress:
        replay_dead_letters(settings, filters, dry_run=dry_run, progress=progress, result=result)
    if dry_run:
        _show_plan(result)
    _summary(result, parked_topic(settings))


def _show_plan(result: ReplayResult) -> None:
    table = Table(title=f"dry run: dead letters in {escape(result.dlq_topic)}")
    for column in ("partition", "offset", "action", "kind", "attempt", "to topic", "note"):
        table.add_column(column)
    for item in result.items[:MAX_LISTED]:
        dead = item.dead_letter
        cells = (
            str(item.dlq_partition),
            str(item.dlq_offset),
            item.action,
            dead.kind if dead else "-",
            str(dead.attempt) if dead else "-",
            dead.source_topic if dead and item.action == REPLAY else "-",
            item.note,
        )
        table.add_row(*map(escape, cells))  # kinds, topics and notes come from the records
    console.print(table)
    if len(result.items) > MAX_LISTED:
        console.print(f"... and {len(result.items) - MAX_LISTED} more", highlight=False)


def _summary(result: ReplayResult, parked_to: str) -> None:
    would = "would be " if result.dry_run else ""
    parts = [
        f"{result.replayed} {would}replayed",
        f"{result.skipped} skipped by filter",
        f"{result.parked} {would}parked" + (f" (copied to {parked_to})" if result.parked else ""),
    ]
    if result.count(MALFORMED):
        parts.append(f"{result.count(MALFORMED)} unreadable")
    console.print(", ".join(parts), highlight=False, markup=False)
    if result.dry_run:
        console.print("dry run: nothing was sent or remembered", highlight=False)
    elif not result.items:
        console.print(f"no new dead letters in {result.dlq_topic}", highlight=False, markup=False)
