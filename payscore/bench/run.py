"""``payscore bench``: the four measurements in order, and the report.

Four measurements on the same simulated payments: (1) producer throughput to a fresh topic,
(2) the database ceiling - plain batched INSERTs of decision rows, one commit per batch,
(3) the real consumer path (``StreamConsumer``) over the pre-filled topic: sustained
payments/s and poll-to-commit latency; ``rounds`` times, each followed by the ceiling again,
reported as medians, (4) optionally an offered load paced at ``rate``/s with end-to-end latency from
producer send to database commit. Everything goes to scratch topics and scratch databases
(``payscore_bench_<id>`` on MySQL, temp files on SQLite), removed afterwards.
"""

from __future__ import annotations

import contextlib
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import make_url

from payscore.bench.loadgen import AUTO, describe, resolve
from payscore.bench.paced import PACED_RAMP_S, PACED_SECONDS, WARMUP, measure_paced, paced_topic
from payscore.bench.probe import Probe, percentiles_ms
from payscore.bench.scratch import (
    bench_settings,
    build_consumer,
    delete_topics,
    measure_db_ceiling,
    scratch_database,
)
from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.stream.kafka import check_broker, ensure_topics
from payscore.stream.producer import ProduceOptions, produce
from payscore.stream.sources import DEFAULT_START


@dataclass(frozen=True)
class BenchOptions:
    count: int = 50_000
    batch_size: int = 500
    rate: float | None = None  # offered load of the paced run; None = skip it
    paced_count: int | None = None  # default: rate * PACED_SECONDS, at most count
    start: datetime = DEFAULT_START
    load_generator: str = AUTO  # the paced run's producer (see bench/loadgen.py)
    rounds: int = 2  # consumer runs, each followed by a ceiling measurement


@dataclass
class BenchReport:
    backend: str = ""
    count: int = 0
    batch_size: int = 0
    produce_rate: float = 0.0
    db_ceiling: float = 0.0  # median of db_ceilings
    db_ceilings: list[float] = field(default_factory=list)  # before round 1, after each round
    consumer_rates: list[float] = field(default_factory=list)  # one per round
    consumer_rate: float = 0.0
    consumer_decided: int = 0
    consumer_latency_ms: tuple[float, float, float] | None = None
    paced_offered: float | None = None
    paced_sent_rate: float = 0.0
    paced_decided: int = 0
    paced_latency_ms: tuple[float, float, float] | None = None
    load_generator: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.consumer_rate / self.db_ceiling if self.db_ceiling else 0.0


def measure_consumer(
    settings: Settings,
    topic: str,
    count: int,
    serve: Callable[[Any, Any], contextlib.AbstractContextManager[Any]] | None = None,
) -> tuple[Probe, Any]:
    """Run the real consumer over a pre-filled topic until it decided ``count`` payments.

    ``serve(consumer, app)``, if given, is entered around the run (the metrics endpoint of
    ``bench/metrics_cost.py``).
    """
    with scratch_database(settings, "consume") as scratch:
        run = bench_settings(settings, scratch, topic, f"payscore-bench-{uuid.uuid4().hex[:8]}")
        consumer, pipeline, app = build_consumer(run, max_messages=count, idle_exit_s=120)
        probe = Probe(pipeline)
        try:
            with serve(consumer, app) if serve is not None else contextlib.nullcontext():
                consumer.run()
        finally:
            app.close()
        return probe, consumer.stats.latency_percentiles()


def run_bench(
    settings: Settings, options: BenchOptions, step: Callable[[str], None] = lambda _s: None
) -> BenchReport:
    """Run the measurements in order and return the figures."""
    from payscore.core.model import load_artifact
    from payscore.stream.sources import simulated_source

    generator = resolve(options.load_generator) if options.rate else ""
    load_artifact(settings.model_path, settings)  # fail before any work if there is no usable model
    check_broker(settings)
    report = BenchReport(count=options.count, batch_size=options.batch_size)
    report.backend = make_url(settings.database_url).get_backend_name()
    settings = settings.model_copy(update={"batch_size": options.batch_size})
    paced_n = ramp_n = 0
    if options.rate:
        paced_n = options.paced_count or int(min(options.count, options.rate * PACED_SECONDS))
        ramp_n = int(options.rate * PACED_RAMP_S)
        report.paced_offered = options.rate
    step("loading the simulated payments")
    source = simulated_source(options.start, loop=False)
    wanted = options.count + WARMUP + ramp_n + paced_n
    items = [item for _, item in zip(range(wanted), source, strict=False)]
    if len(items) < options.count:
        raise ServiceUnavailable("not enough simulated payments after the start date")
    main, rest = items[: options.count], items[options.count :]

    topic = f"payscore-bench-{uuid.uuid4().hex[:10]}"
    paced = paced_topic() if options.rate and rest else None
    partitions = settings.topic_partitions
    try:
        step(f"1/4 producing {len(main)} payments to {topic}")
        ensure_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"], partitions)
        if paced:
            ensure_topics(settings, [paced, f"{paced}.dlq", f"{paced}.decisions"], partitions)
        stats = produce(settings, main, ProduceOptions(topic=topic, rate=0, partitions=partitions))
        report.produce_rate = stats.rate

        # Ceiling and consumer alternate, and the report takes medians: on this machine either
        # figure moved by up to 25 % from one measurement to the next a minute later.
        step(f"2/4 database ceiling: batched INSERTs of {options.batch_size}")
        payments = [i.payment for i in main]
        ceilings = [measure_db_ceiling(settings, payments, options.batch_size)]
        runs = []
        for round_no in range(1, options.rounds + 1):
            step(
                f"3/4 consumer over the pre-filled topic, then the ceiling again "
                f"(round {round_no} of {options.rounds})"
            )
            runs.append(measure_consumer(settings, topic, len(main)))
            ceilings.append(measure_db_ceiling(settings, payments, options.batch_size))
        report.db_ceilings = ceilings
        report.consumer_rates = [probe.rate for probe, _ in runs]
        report.db_ceiling = statistics.median(ceilings)
        report.consumer_rate = statistics.median(report.consumer_rates)
        # Latency and timing notes from the slower run (the lower median).
        probe, latency = sorted(runs, key=lambda run: run[0].rate)[(len(runs) - 1) // 2]
        report.consumer_decided = min(p.decided for p, _ in runs)
        report.consumer_latency_ms = latency
        report.notes.append(
            f"database ceiling {_listed(ceilings)} rows/s (median {report.db_ceiling:,.0f}), "
            f"measured before the first consumer run and after each"
        )
        report.notes.append(
            f"consumer {_listed(report.consumer_rates)} payments/s "
            f"(median {report.consumer_rate:,.0f})"
        )
        if probe.first is not None and probe.last is not None:
            span = probe.last - probe.first
            report.notes.append(
                f"consumer time over {span:.1f} s: main thread prepare (parse, dedupe, features, "
                f"model, rules) {probe.prepare_s:.1f} s, database write {probe.write_s:.1f} s "
                f"(writer thread and process, overlapping the main thread)"
            )
        if report.consumer_decided < len(main):
            report.notes.append(
                f"consumer decided only {report.consumer_decided} of {len(main)} in a round"
            )
    except BaseException:
        if paced:
            delete_topics(settings, [paced, f"{paced}.dlq", f"{paced}.decisions"])
        raise
    finally:
        delete_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"])

    if options.rate and rest:
        measured = len(rest) - WARMUP - ramp_n
        step(
            f"4/4 paced load: {measured} payments at {options.rate:g}/s "
            f"(after {ramp_n} sent at that rate to reach steady load)"
        )
        report.load_generator = describe(generator)
        paced_probe, sent_rate = measure_paced(
            settings, rest, options.rate, partitions, paced, generator
        )
        latencies = paced_probe.latencies_after(ramp_n)
        report.paced_sent_rate = sent_rate
        report.paced_decided = len(latencies)
        if report.paced_decided < measured:
            report.notes.append(f"paced run: {report.paced_decided} of {measured} decided in time")
        report.paced_latency_ms = percentiles_ms(latencies)
    return report


def _listed(values: list[float]) -> str:
    text = [f"{v:,.0f}" for v in values]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]
