"""``payscore bench``: end-to-end throughput and latency on the configured broker and database."""

from __future__ import annotations

import enum

import typer
from rich.markup import escape
from rich.table import Table

from payscore.bench.loadgen import AUTO, CONFLUENT, KAFKA_PYTHON
from payscore.cli.common import console, err_console, settings_from
from payscore.stream.kafka import quiet_client_logs

RATIO_TARGET = 0.70


class LoadGenerator(str, enum.Enum):
    auto = AUTO
    confluent = CONFLUENT
    kafka_python = KAFKA_PYTHON


P99_TARGET_MS = 100.0


_LOAD_GENERATOR = typer.Option(
    LoadGenerator.auto,
    "--load-generator",
    # Help text is rich markup: the escaped "[" keeps "[bench]" from being taken for a style.
    help="Producer of the paced run. confluent-kafka (C) costs the machine far less CPU than "
    "kafka-python; it is not a dependency of payscore but an extra: "
    'pip install "payscore\\[bench]" (the dev extra has it too). auto picks it when installed.',
)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)


def bench_cmd(
    ctx: typer.Context,
    count: int = typer.Option(50000, "--count", min=1, help="Payments to push through."),
    batch_size: int = typer.Option(
        500, "--batch-size", min=1, max=100_000, help="Consumer batch and INSERT batch size."
    ),
    rate: float = typer.Option(
        None, "--rate", min=1.0, help="Also run a paced load at this many payments/s."
    ),
    paced_count: int = typer.Option(
        None, "--paced-count", min=1, help="Payments in the paced run (default: 20 s worth)."
    ),
    load_generator: LoadGenerator = _LOAD_GENERATOR,
    recovery: str = typer.Option(
        None,
        "--recovery",
        help="Instead: restart-to-ready time and peak memory with N,N,... stored payments, "
        "full replay against feature snapshot (database only; docs/benchmarks.md).",
    ),
    metrics_cost: bool = typer.Option(
        False,
        "--metrics-cost",
        help="Instead: one consumer with metrics off and on (served, scraped every second), "
        "alternating for --rounds rounds of --count payments; ratios of throughput and CPU.",
    ),
    feature_cost: str = typer.Option(
        None,
        "--feature-cost",
        help="Instead: one consumer with explanations (explain) or a shadow-scoring "
        "challenger (challenger) off and on, alternating like --metrics-cost.",
    ),
    consumers: int = typer.Option(
        None,
        "--consumers",
        min=1,
        max=16,
        help="Instead: 1 and N consumer processes in one group over the same --count payments, "
        "alternating for --rounds rounds, with the database ceiling between runs.",
    ),
    rounds: int = typer.Option(
        2,
        "--rounds",
        min=1,
        max=10,
        help="Consumer runs, each followed by a ceiling measurement; the report takes medians.",
    ),
) -> None:
    """End-to-end benchmark against the configured broker and database (scratch copies)."""
    from payscore.bench import BenchOptions, run_bench

    settings = settings_from(ctx)
    quiet_client_logs(settings.log_level)
    options = BenchOptions(
        count=count,
        batch_size=batch_size,
        rate=rate,
        paced_count=paced_count,
        load_generator=load_generator.value,
        rounds=rounds,
    )

    def step(text: str) -> None:
        err_console.print(f"[dim]bench:[/dim] {escape(text)}", highlight=False)

    if consumers and any(ctx.params.get(k) for k in ("recovery", "metrics_cost", "feature_cost")):
        raise typer.BadParameter("--consumers runs alone", param_hint="--consumers")
    if consumers:
        from payscore.bench.scaleout import report_lines as scaleout_lines
        from payscore.bench.scaleout import run_consumers_bench

        scaled = run_consumers_bench(settings, count, consumers, rounds, batch_size, step)
        for line in scaleout_lines(scaled):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    if sum(map(bool, (recovery, metrics_cost, feature_cost))) > 1:
        raise typer.BadParameter("choose one of --recovery, --metrics-cost and --feature-cost")
    if feature_cost:
        from payscore.bench import feature_cost as features
        from payscore.bench.metrics_cost import report as cost_report

        if feature_cost not in features.FEATURES:
            raise typer.BadParameter(
                f"expected one of {', '.join(features.FEATURES)}", param_hint="--feature-cost"
            )
        settings = settings.model_copy(update={"batch_size": batch_size})
        measured = features.measure_feature_cost(settings, feature_cost, count, rounds, step)
        console.print(cost_report(measured), highlight=False, markup=False, soft_wrap=True)
        return
    if metrics_cost:
        from payscore.bench import metrics_cost as cost

        settings = settings.model_copy(update={"batch_size": batch_size})
        measured = cost.measure_metrics_cost(settings, count, rounds, step=step)
        console.print(cost.report(measured), highlight=False, markup=False, soft_wrap=True)
        return
    if recovery:
        from payscore.bench.recovery import parse_sizes, report_lines, run_recovery

        try:
            sizes = parse_sizes(recovery)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--recovery") from e
        for line in report_lines(run_recovery(settings, sizes, step)):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    report = run_bench(settings, options, step)

    table = Table(
        title=f"payscore bench: {report.count} payments, batch {report.batch_size}, "
        f"{escape(report.backend)}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_row("producer throughput", f"{report.produce_rate:,.0f} msg/s", "")
    table.add_row(
        "database ceiling (batched INSERT, median)", f"{report.db_ceiling:,.0f} rows/s", ""
    )
    table.add_row(
        "consumer sustained throughput (median)", f"{report.consumer_rate:,.0f} payments/s", ""
    )
    ok = report.ratio >= RATIO_TARGET
    table.add_row(
        "consumer / database ceiling",
        f"{report.ratio:.3f}",
        f"{'[green]' if ok else '[red]'}>= {RATIO_TARGET:.2f}[/]",
    )
    if report.consumer_latency_ms:
        table.add_row(
            "poll-to-commit latency p50/p95/p99 (backlog)",
            "{:.0f} / {:.0f} / {:.0f} ms".format(*report.consumer_latency_ms),
            "",
        )
    if report.paced_offered:
        table.add_row(
            f"paced load offered / sent ({escape(report.load_generator)})",
            f"{report.paced_offered:,.0f} / {report.paced_sent_rate:,.0f} payments/s",
            "",
        )
        if report.paced_latency_ms:
            p99 = report.paced_latency_ms[2]
            good = "[green]" if p99 < P99_TARGET_MS else "[red]"
            table.add_row(
                f"send-to-commit latency p50/p95/p99 ({report.paced_decided} payments)",
                "{:.0f} / {:.0f} / {:.0f} ms".format(*report.paced_latency_ms),
                f"{good}p99 < {P99_TARGET_MS:.0f} ms[/]",
            )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
