"""``payscore bench --consumers N``: one consumer against N in one group, same run, same topic.

Each run is a fresh scratch database and consumer group over the same pre-filled topic; the
consumers are separate processes (as a deployment runs them: one Python process uses about
one core), started together, each exiting once idle. Throughput is the stored payments over
the span of their ``scored_at`` (first to last decision), so start-up and the group's join
are left out. Runs of 1 and N consumers alternate, and the database ceiling (batched INSERTs,
``scratch.measure_db_ceiling``) is measured between them: on a shared machine either figure
moves from one minute to the next, so the report gives medians and their ratios.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from payscore.config import Settings
from payscore.core.schema import Payment
from payscore.errors import ServiceUnavailable
from payscore.store.engine import make_engine
from payscore.store.schema import scored_transactions

#: A consumer exits after this long with partitions and nothing to read.
IDLE_EXIT_S = 8.0
#: Longest wait for a run to store every payment.
RUN_TIMEOUT_S = 900.0


@dataclass
class ScaleoutReport:
    count: int
    consumers: int
    rates: dict[int, list[float]] = field(default_factory=dict)  # consumers -> payments/s
    cpu_s: dict[int, list[float]] = field(default_factory=dict)  # consumers -> CPU seconds
    ceilings: list[float] = field(default_factory=list)  # database ceiling, rows/s

    def median_rate(self, n: int) -> float:
        return statistics.median(self.rates[n]) if self.rates.get(n) else 0.0


def _consume(settings: Settings) -> None:
    """A child process: the same consumer ``payscore consume`` runs, until idle."""
    from payscore.stream.consumer import build_consumer_app
    from payscore.stream.kafka import quiet_client_logs

    quiet_client_logs("WARNING")
    app = build_consumer_app(settings, max_messages=None, idle_exit_s=IDLE_EXIT_S)
    try:
        app.consumer.run()
    finally:
        app.close()


def _stored(settings: Settings) -> tuple[int, float]:
    """Stored decisions and the seconds between the first and the last ``scored_at``."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            c = scored_transactions.c
            n, first, last = conn.execute(
                select(func.count(), func.min(c.scored_at), func.max(c.scored_at))
            ).one()
    finally:
        engine.dispose()
    span = (last - first).total_seconds() if n else 0.0
    return int(n), span


def measure_group(
    settings: Settings, topic: str, count: int, consumers: int
) -> tuple[float, float]:
    """Payments/s of ``consumers`` processes in one group over ``topic`` (``count`` payments),
    and the CPU seconds they used (start-up included)."""
    from payscore.bench.scratch import bench_settings, scratch_database

    ctx = multiprocessing.get_context("spawn")  # settings (and the secret) go over a pipe
    with scratch_database(settings, "scale") as scratch:
        run = bench_settings(settings, scratch, topic, f"payscore-bench-{uuid.uuid4().hex[:8]}")
        procs = [ctx.Process(target=_consume, args=(run,)) for _ in range(consumers)]
        cpu_before = _children_cpu()
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        stored, span = 0, 0.0
        while time.monotonic() < deadline:
            stored, span = _stored(run)
            if stored >= count or not any(p.is_alive() for p in procs):
                break
            time.sleep(0.5)
        for proc in procs:
            proc.join(IDLE_EXIT_S * 4)
            if proc.is_alive():  # a member left without partitions never idles out
                proc.terminate()
                proc.join(30)
        cpu = _children_cpu() - cpu_before
    if stored < count:
        raise ServiceUnavailable(f"{consumers} consumer(s) stored {stored} of {count} payments")
    return (stored / span if span > 0 else 0.0), cpu


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_scaleout(
    settings: Settings,
    topic: str,
    payments: Sequence[Payment],
    consumers: int,
    rounds: int,
    batch_size: int,
    step: Callable[[str], None],
) -> ScaleoutReport:
    """Rounds of 1 then ``consumers`` consumers over the pre-filled ``topic``, the database
    ceiling before the first and after each run."""
    from payscore.bench.scratch import measure_db_ceiling

    report = ScaleoutReport(count=len(payments), consumers=consumers)
    report.ceilings.append(measure_db_ceiling(settings, payments, batch_size))
    for round_no in range(1, rounds + 1):
        for n in sorted({1, consumers}):
            step(f"round {round_no} of {rounds}: {n} consumer(s) over {len(payments)} payments")
            rate, cpu = measure_group(settings, topic, len(payments), n)
            report.rates.setdefault(n, []).append(rate)
            report.cpu_s.setdefault(n, []).append(cpu)
            report.ceilings.append(measure_db_ceiling(settings, payments, batch_size))
    return report


def run_consumers_bench(
    settings: Settings,
    count: int,
    consumers: int,
    rounds: int,
    batch_size: int,
    step: Callable[[str], None],
) -> ScaleoutReport:
    """Simulated payments to a scratch topic (``topic_partitions`` partitions), then
    ``run_scaleout``; the topics are removed afterwards."""
    from payscore.bench.scratch import delete_topics
    from payscore.core.model import load_artifact
    from payscore.stream.kafka import check_broker, ensure_topics
    from payscore.stream.producer import ProduceOptions, produce
    from payscore.stream.sources import DEFAULT_START, simulated_source

    load_artifact(settings.model_path, settings)  # no usable model: fail before any work
    check_broker(settings)
    settings = settings.model_copy(update={"batch_size": batch_size})
    step("loading the simulated payments")
    source = simulated_source(DEFAULT_START, loop=False)
    items = [item for _, item in zip(range(count), source, strict=False)]
    topic = f"payscore-bench-{uuid.uuid4().hex[:10]}"
    topics = [topic, f"{topic}.dlq", f"{topic}.decisions"]
    partitions = settings.topic_partitions
    try:
        step(f"producing {len(items)} payments to {topic} ({partitions} partitions)")
        ensure_topics(settings, topics, partitions)
        produce(settings, items, ProduceOptions(topic=topic, rate=0, partitions=partitions))
        payments = [i.payment for i in items]
        return run_scaleout(settings, topic, payments, consumers, rounds, batch_size, step)
    finally:
        delete_topics(settings, topics)


def report_lines(report: ScaleoutReport) -> list[str]:
    """The figures, one a line, with the ratio to one consumer and to the ceiling."""
    ceiling = statistics.median(report.ceilings)
    one = report.median_rate(1)
    lines = [
        f"payscore bench --consumers {report.consumers}: {report.count} payments, "
        f"database ceiling {ceiling:,.0f} rows/s (median of "
        + ", ".join(f"{c:,.0f}" for c in report.ceilings)
        + ")"
    ]
    for n in sorted(report.rates):
        rate = report.median_rate(n)
        runs = ", ".join(f"{r:,.0f}" for r in report.rates[n])
        cpu = statistics.median(report.cpu_s[n])
        lines.append(
            f"{n} consumer(s): {rate:,.0f} payments/s (runs {runs}); "
            f"x{rate / one if one else 0:.2f} one consumer, {rate / ceiling if ceiling else 0:.2f}"
            f" of the ceiling; CPU {cpu:.0f} s a run (start-up included)"
        )
    return lines
