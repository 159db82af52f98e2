"""``payscore produce``: stream payments (simulated or from a file) into the input topic."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from payscore.cli.common import (
    BootstrapServers,
    MetricsPort,
    console,
    err_console,
    settings_from,
)
from payscore.cli.display import progress_bar, report_rejects
from payscore.errors import InputError

if TYPE_CHECKING:  # kafka-python and the payment readers load when the command runs, not --help
    from payscore.stream.producer import ProduceStats
    from payscore.stream.sources import FileSource, SourceItem


def register(app: typer.Typer) -> None:
    app.command("produce")(produce_cmd)


def _parse_start(value: str | None) -> datetime:
    if value is None:
        from payscore.stream.sources import DEFAULT_START

        return DEFAULT_START
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "expected an ISO date or time such as 2018-08-01", param_hint="--start"
        ) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def produce_cmd(
    ctx: typer.Context,
    rate: float = typer.Option(
        100.0, "--rate", min=0.0, help="Payments per second, evenly paced; 0 = as fast as possible."
    ),
    count: int = typer.Option(
        None, "--count", min=1, help="Stop after this many payments (default: until the end)."
    ),
    source_file: str = typer.Option(
        None,
        "--from",
        help="Read payments from a CSV or JSON-lines file instead of the simulated world.",
    ),
    start: str = typer.Option(
        None, "--start", help="Simulated world: first event time (default 2018-08-01, UTC)."
    ),
    topic: str = typer.Option(
        None, "--topic", help="Topic to write to. Env: PAYSCORE_INPUT_TOPIC."
    ),
    partitions: int = typer.Option(
        None,
        "--partitions",
        min=1,
        max=1000,
        help="Partitions if the topic is created. Env: PAYSCORE_TOPIC_PARTITIONS.",
    ),
    bad_rate: float = typer.Option(
        0.0, "--bad-rate", min=0.0, max=1.0, help="Fraction of malformed messages to inject."
    ),
    duplicate_rate: float = typer.Option(
        0.0,
        "--duplicate-rate",
        min=0.0,
        max=1.0,
        help="Fraction of payments re-sent with the same transaction id.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for bad-message and duplicate choices."),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="Publish fraud labels to the labels topic, 7 days late in event time.",
    ),
    bootstrap: BootstrapServers = None,
    rejects: str = typer.Option(
        None, "--rejects", help="With --from: CSV to write rejected rows to (line, kind, ...)."
    ),
    metrics_port: MetricsPort = None,
) -> None:
    """Stream payments (simulated by default) into the input topic.

    A file is read like ``payscore score`` reads it: rows that fail validation, repeat a
    transaction id or carry an unreadable is_fraud are not sent; they are listed at the end.
    """
    # kafka-python and the readers: only when the command runs, never for --help.
    from payscore.core.paymentfile import check_output, count_lines
    from payscore.stream.kafka import quiet_client_logs
    from payscore.stream.metrics import ProducerCollector, serve_metrics
    from payscore.stream.producer import ProduceOptions, ProduceStats, produce
    from payscore.stream.sources import read_payments_file

    begin = _parse_start(start)
    if rejects is not None and source_file is None:
        raise typer.BadParameter("needs --from FILE", param_hint="--rejects")
    settings = settings_from(
        ctx,
        input_topic=topic,
        topic_partitions=partitions,
        kafka_bootstrap_servers=bootstrap,
        metrics_port=metrics_port,
    )
    quiet_client_logs(settings.log_level)
    options = ProduceOptions(
        topic=settings.input_topic,
        rate=rate,
        count=count,
        bad_rate=bad_rate,
        duplicate_rate=duplicate_rate,
        seed=seed,
        labels=labels,
        labels_topic=settings.labels_topic,
        partitions=settings.topic_partitions,
    )
    source: Iterator[SourceItem] | FileSource
    file_source: FileSource | None = None
    total = count
    if source_file is not None:
        if not Path(source_file).is_file():
            raise InputError(f"cannot read {source_file}: no such file")
        if rejects is not None:
            check_output(rejects)
        source = file_source = read_payments_file(source_file)
        rows = count_lines(file_source.file.path) - (file_source.file.format == "csv")
        total = min(count, rows) if count is not None else rows
        where = str(source_file)
    else:
        source = _lazy_world(begin)
        where = f"simulated world from {begin.date().isoformat()}"
    err_console.print(  # the topic and the path are the user's: "[" is not markup
        f"producing to {options.topic} ({where}); Ctrl-C stops",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # stop like Ctrl-C: flush, then totals

    stats = ProduceStats()
    metrics = serve_metrics(ProducerCollector(stats), settings.metrics_port)
    with metrics, progress_bar(err_console) as progress:

        def show(stats: ProduceStats) -> None:
            progress("producing", stats.payments + stats.bad, total)

        produce(settings, source, options, on_progress=show, stats=stats)

    verb = "stopped" if stats.interrupted else "done"
    console.print(f"{verb}: {_line(stats)}", highlight=False)
    if stats.bad_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.bad_by_kind.items()))
        console.print(f"bad messages by kind: {kinds}", highlight=False)
    if file_source is not None:
        _report_file(file_source, source_file, rejects, stats)


def _report_file(source: FileSource, path: str, rejects: str | None, stats: ProduceStats) -> None:
    """The file's rejected rows, as ``score`` lists them; an error if none was usable."""
    from payscore.core.paymentfile import nothing_usable, plural

    report_rejects(err_console, source.rejected, rejects)
    if source.rejected:
        console.print(
            f"{plural(len(source.rejected), 'row')} of {path} rejected (not sent)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if not source.file.accepted and not stats.interrupted:
        raise nothing_usable(path, source.rejected)


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _lazy_world(begin: datetime) -> Iterator[SourceItem]:
    # A generator: the world loads (or generates, ~30 s the first time) only once the topic is
    # ready, so a broker problem is reported before any heavy work.
    from payscore.stream.sources import simulated_source

    yield from simulated_source(begin)


def _line(stats: ProduceStats) -> str:
    parts = [
        f"sent {stats.sent}",
        f"payments {stats.payments}",
        f"bad {stats.bad}",
        f"duplicates {stats.duplicates}",
    ]
    if stats.labels:
        parts.append(f"labels {stats.labels}")
    parts.append(f"{stats.rate:,.0f} msg/s")
    return ", ".join(parts)
