"""What the consumer's metrics cost: one consumer, metrics off and on, in the same run.

Both runs drain the same pre-filled topic with the real consumer (``run.measure_consumer``),
each into its own scratch database. "On" is what ``consume --metrics-port`` adds: the HTTP
endpoint (``stream/metrics.py``) in the consumer's process, scraped by a separate process
every ``scrape_every_s`` (Prometheus' default is 15 s; 1 s is 15 times harsher). The stats the
endpoint reads are kept in both runs: the summary line needs them anyway.

The two alternate, the order swapped every round (off-on, on-off, ...), so drift in what else
the machine is doing falls on both. Reported per pair: payments/s and CPU time per payment of
this process (main, writer and Kafka threads; a writer process's own CPU is not included, the
same in both), and the ratio on/off; the medians and the spread across rounds.

    python -m payscore.bench.metrics_cost --count 30000 --rounds 5

(settings from the environment, as ``payscore bench``: PAYSCORE_DATABASE_URL, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from payscore.bench.run import measure_consumer
from payscore.bench.scratch import delete_topics
from payscore.config import Settings, load_settings
from payscore.errors import ServiceUnavailable
from payscore.stream.kafka import check_broker, ensure_topics
from payscore.stream.producer import ProduceOptions, produce
from payscore.stream.sources import DEFAULT_START

#: The stand-in for Prometheus: fetches /metrics every N seconds until killed (its own process,
#: so the client's CPU is not counted as the consumer's).
_SCRAPER = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        pass
    time.sleep(every)
"""


@dataclass
class Run:
    on: bool  # the measured feature (metrics, explanations, a challenger) on
    rate: float  # payments/s, first prepare to last commit
    cpu_us: float  # this process's CPU time per payment decided, microseconds
    decided: int


@dataclass
class MetricsCost:
    """Paired off/on runs of one consumer; ``title`` heads the report."""

    count: int
    scrape_every_s: float
    runs: list[Run] = field(default_factory=list)
    title: str = ""
    notes: list[str] = field(default_factory=list)  # printed last by ``report``
    #: CPU milliseconds one /metrics rendering takes, after each "on" run (its own stats).
    scrape_cpu_ms: list[float] = field(default_factory=list)

    def pairs(self) -> list[tuple[Run, Run]]:
        """(off, on) for each round."""
        off = [r for r in self.runs if not r.on]
        on = [r for r in self.runs if r.on]
        return list(zip(off, on, strict=True))

    def rate_ratios(self) -> list[float]:
        """on/off payments/s per round; below 1 means metrics slowed the consumer."""
        return [on.rate / off.rate for off, on in self.pairs() if off.rate]

    def cpu_ratios(self) -> list[float]:
        """on/off CPU per payment per round; above 1 means metrics cost CPU."""
        return [on.cpu_us / off.cpu_us for off, on in self.pairs() if off.cpu_us]


#: Renderings timed after an "on" run, for the per-scrape CPU figure.
_RENDERINGS = 200


@contextlib.contextmanager
def _served_and_scraped(
    consumer: Any, app: Any, every_s: float, scrape_cpu_ms: list[float]
) -> Iterator[None]:
    from prometheus_client import generate_latest

    from payscore.stream.metrics import MetricsServer

    server = MetricsServer(consumer.stats, app.artifact.version, 0, "127.0.0.1")
    scraper = subprocess.Popen(  # noqa: S603 - fixed code, our own interpreter
        [sys.executable, "-c", _SCRAPER, f"http://127.0.0.1:{server.port}/metrics", str(every_s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
        started = time.process_time()
        for _ in range(_RENDERINGS):
            generate_latest(server.registry)
        scrape_cpu_ms.append((time.process_time() - started) / _RENDERINGS * 1000)
    finally:
        scraper.kill()
        scraper.wait(10)
        server.close()


def measure_metrics_cost(
    settings: Settings,
    count: int = 30_000,
    rounds: int = 5,
    scrape_every_s: float = 1.0,
    step: Callable[[str], None] = lambda _s: None,
) -> MetricsCost:
    result = MetricsCost(
        count=count,
        scrape_every_s=scrape_every_s,
        title=f"metrics cost: {count} payments a run, /metrics scraped every "
        f"{scrape_every_s:g} s when on",
    )

    def serve(consumer: Any, app: Any) -> contextlib.AbstractContextManager[None]:
        return _served_and_scraped(consumer, app, scrape_every_s, result.scrape_cpu_ms)

    def run_one(topic: str, on: bool) -> Any:
        return measure_consumer(settings, topic, count, serve if on else None)[0]

    return measure_off_on(settings, result, rounds, run_one, "metrics", step)


def measure_off_on(
    settings: Settings,
    result: MetricsCost,
    rounds: int,
    run_one: Callable[[str, bool], Any],
    what: str,
    step: Callable[[str], None] = lambda _s: None,
) -> MetricsCost:
    """Fill ``result`` with ``rounds`` pairs of consumer runs, ``what`` off and on, the order
    swapped every round, each draining the same pre-filled topic of ``result.count``
    simulated payments; ``run_one(topic, on)`` runs one consumer and returns its probe."""
    from payscore.core.model import load_artifact
    from payscore.stream.sources import simulated_source

    count = result.count
    load_artifact(settings.model_path, settings)  # fail before any work without a usable model
    check_broker(settings)
    step("loading the simulated payments")
    items = [
        item
        for _, item in zip(range(count), simulated_source(DEFAULT_START, loop=False), strict=False)
    ]
    if len(items) < count:
        raise ServiceUnavailable("not enough simulated payments after the start date")
    topic = f"payscore-bench-{uuid.uuid4().hex[:10]}"
    topics = [topic, f"{topic}.dlq", f"{topic}.decisions"]
    try:
        ensure_topics(settings, topics, settings.topic_partitions)
        step(f"producing {count} payments to {topic}")
        produce(settings, items, ProduceOptions(topic=topic, rate=0))
        for round_no in range(1, rounds + 1):
            order = (False, True) if round_no % 2 else (True, False)
            for on in order:
                step(f"round {round_no} of {rounds}: consumer, {what} {'on' if on else 'off'}")
                probe = run_one(topic, on)
                cpu_us = probe.cpu_s / probe.decided * 1e6 if probe.decided else 0.0
                result.runs.append(Run(on, probe.rate, cpu_us, probe.decided))
    finally:
        delete_topics(settings, topics)
    return result


def report(cost: MetricsCost) -> str:
    lines = [
        cost.title,
        "round  off payments/s  on payments/s  ratio   off CPU us/payment  on CPU us/payment"
        "  ratio",
    ]
    for n, (off, on) in enumerate(cost.pairs(), 1):
        lines.append(
            f"{n:>5}  {off.rate:>14,.0f}  {on.rate:>13,.0f}  {on.rate / off.rate:5.3f}   "
            f"{off.cpu_us:>18,.1f}  {on.cpu_us:>17,.1f}  {on.cpu_us / off.cpu_us:5.3f}"
        )
    for name, ratios in (
        ("payments/s on/off", cost.rate_ratios()),
        ("CPU on/off", cost.cpu_ratios()),
    ):
        lines.append(
            f"{name}: median {statistics.median(ratios):.3f}, "
            f"range {min(ratios):.3f} to {max(ratios):.3f}"
        )
    if cost.scrape_cpu_ms:
        per_scrape = statistics.median(cost.scrape_cpu_ms)
        lines.append(
            f"one /metrics rendering: {per_scrape:.2f} ms CPU (median over "
            f"{len(cost.scrape_cpu_ms)} runs); one scrape every {cost.scrape_every_s:g} s "
            f"takes {per_scrape / 10 / cost.scrape_every_s:.3f} % of one core"
        )
    lines += cost.notes
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--scrape-every", type=float, default=1.0)
    args = parser.parse_args(argv)
    settings = load_settings(overrides={"batch_size": args.batch_size}).settings
    cost = measure_metrics_cost(
        settings, args.count, args.rounds, args.scrape_every, lambda s: print(s, file=sys.stderr)
    )
    print(report(cost))


if __name__ == "__main__":
    main()
