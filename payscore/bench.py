"""``payscore bench``: how fast the real pipeline runs against the configured broker and database.

Four measurements on the same simulated payments: (1) producer throughput to a fresh topic,
(2) the database ceiling - plain batched INSERTs of decision rows, one commit per batch,
measured before and again after (3), and averaged, (3) the real consumer path
(``StreamConsumer``) over the pre-filled topic: sustained payments/s and poll-to-commit
latency, (4) optionally an offered load paced at ``rate``/s with end-to-end latency from
producer send to database commit. Everything goes to scratch topics and scratch databases
(``payscore_bench_<id>`` on MySQL, temp files on SQLite), removed afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from payscore.config import Settings
from payscore.core.decision import APPROVED, Decision
from payscore.core.schema import Payment, payment_to_json
from payscore.errors import ServiceUnavailable
from payscore.pipeline import RawMessage, decision_row
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema, describe_db_error
from payscore.store.schema import scored_transactions
from payscore.stream.kafka import check_broker, ensure_topics, make_admin, make_producer
from payscore.stream.producer import Pacer, ProduceOptions, produce
from payscore.stream.sources import DEFAULT_START, SourceItem

log = logging.getLogger(__name__)

WARMUP = 200  # payments decided before the paced run starts (group join, state, JIT caches)
PACED_SECONDS = 20  # default length of the paced run
PACED_LINGER_MS = 5
PACED_HANDOVER_S = 1.0  # the paced messages reach the producer process before it starts
# The paced run's first seconds are sent at the offered rate but not counted: they take the
# consumer from idle to steady load (its first fetches after an idle wait), which is not the
# sustained latency the run measures.
PACED_RAMP_S = 2.0


@dataclass(frozen=True)
class BenchOptions:
    count: int = 50_000
    batch_size: int = 500
    rate: float | None = None  # offered load of the paced run; None = skip it
    paced_count: int | None = None  # default: rate * PACED_SECONDS, at most count
    start: datetime = DEFAULT_START


@dataclass
class BenchReport:
    backend: str = ""
    count: int = 0
    batch_size: int = 0
    produce_rate: float = 0.0
    db_ceiling: float = 0.0
    consumer_rate: float = 0.0
    consumer_decided: int = 0
    consumer_latency_ms: tuple[float, float, float] | None = None
    paced_offered: float | None = None
    paced_sent_rate: float = 0.0
    paced_decided: int = 0
    paced_latency_ms: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.consumer_rate / self.db_ceiling if self.db_ceiling else 0.0


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float] | None:
    if not seconds:
        return None
    p50, p95, p99 = np.percentile(np.asarray(seconds, dtype=float) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


# -- scratch databases -------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(settings: Settings, label: str) -> Iterator[Settings]:
    """Settings pointing at a new, schema-initialised database, dropped on exit."""
    url = make_url(settings.sqlalchemy_url())
    if url.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="payscore-bench-") as tmp:
            path = Path(tmp) / f"{label}.db"
            scratch = settings.model_copy(update={"database_url": f"sqlite:///{path}"})
            _init(scratch)
            yield scratch
        return
    name = f"payscore_bench_{uuid.uuid4().hex[:12]}_{label}"
    if not re.fullmatch(r"payscore_bench_[0-9a-f]{12}_[a-z]{1,8}", name):
        raise ValueError("bad scratch database label")  # the name goes into DDL
    server = make_engine(settings)
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except SQLAlchemyError as e:
        server.dispose()
        raise ServiceUnavailable(
            f"cannot create scratch database {name}: {describe_db_error(e)}"
        ) from e
    scratch_url = url.set(database=name).render_as_string(hide_password=False)
    scratch = settings.model_copy(update={"database_url": scratch_url, "database_password": None})
    try:
        _init(scratch)
        yield scratch
    finally:
        try:
            with server.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        except SQLAlchemyError as e:
            log.warning("could not drop scratch database %s: %s", name, describe_db_error(e))
        server.dispose()


def _init(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        create_schema(engine)
    finally:
        engine.dispose()


# -- the four measurements --------------------------------------------------------------


def _ceiling_rows(payments: Sequence[Payment], now: datetime) -> list[dict[str, Any]]:
    """The very rows the consumer would store, built by the pipeline's own row function."""
    rows = []
    for i, p in enumerate(payments):
        decision = Decision(p.transaction_id, 0.01, APPROVED, (), "bench")
        message = RawMessage("bench", i % 6, i, None, None)
        rows.append(decision_row(p, decision, message, now, now))
    return rows


def measure_db_ceiling(settings: Settings, payments: Sequence[Payment], batch_size: int) -> float:
    """Rows/s of batched multi-row INSERTs with a commit per batch, into a scratch database."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = _ceiling_rows(payments, now)
    with scratch_database(settings, "ceiling") as scratch:
        engine = make_engine(scratch)
        try:
            started = time.perf_counter()
            for lo in range(0, len(rows), batch_size):
                with engine.begin() as conn:
                    conn.execute(insert(scored_transactions), rows[lo : lo + batch_size])
            elapsed = time.perf_counter() - started
        except SQLAlchemyError as e:
            raise ServiceUnavailable(f"database error: {describe_db_error(e)}") from e
        finally:
            engine.dispose()
    return len(rows) / elapsed if elapsed > 0 else 0.0


class _Probe:
    """Times the pipeline: first prepare, last commit, per-payment send-to-commit latency.

    Latency uses each record's Kafka timestamp (CreateTime, set by the producer at send) and
    the wall clock right after the batch's database commit; only records sent at or after
    ``since_ms`` count (so warm-up messages are left out). ``sent_ms`` holds each counted
    record's send time, in the order of ``latencies``.
    """

    def __init__(self, pipeline: Any, since_ms: float | None = None) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.decided = 0
        self.latencies: list[float] = []
        self.sent_ms: list[float] = []
        self.since_ms = since_ms
        self.prepare_s = 0.0  # parse, duplicate check, features, model, rules
        self.write_s = 0.0  # the database transaction
        self._sent_ms: dict[tuple[str, int, int], float] = {}
        prepare, write = pipeline.prepare, pipeline.write

        def timed_prepare(messages: Any, *args: Any, **kwargs: Any) -> Any:
            if self.first is None:
                self.first = time.perf_counter()
            if self.since_ms is not None:
                for m in messages:
                    self._sent_ms[(m.topic, m.partition, m.offset)] = m.timestamp
            started = time.perf_counter()
            try:
                return prepare(messages, *args, **kwargs)
            finally:
                self.prepare_s += time.perf_counter() - started

        def timed_write(batch: Any) -> Any:
            started = time.perf_counter()
            result = write(batch)
            self.last = time.perf_counter()
            self.write_s += self.last - started
            wall_ms = time.time() * 1000
            self.decided += len(batch.decided)
            if self.since_ms is not None:
                for row in batch.rows:
                    key = (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])
                    sent = self._sent_ms.pop(key, None)
                    if sent is not None and sent >= self.since_ms:
                        self.latencies.append((wall_ms - sent) / 1000)
                        self.sent_ms.append(sent)
            return result

        pipeline.prepare, pipeline.write = timed_prepare, timed_write

    def latencies_after(self, skip: int) -> list[float]:
        """The latencies of all but the ``skip`` earliest-sent records."""
        order = sorted(range(len(self.latencies)), key=self.sent_ms.__getitem__)
        return [self.latencies[i] for i in order[skip:]]

    @property
    def rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.decided / (self.last - self.first)


def build_consumer(settings: Settings, max_messages: int, idle_exit_s: float) -> Any:
    """The same objects ``payscore consume`` builds (``build_consumer_app``)."""
    from payscore.stream.consumer import build_consumer_app

    app = build_consumer_app(settings, max_messages=max_messages, idle_exit_s=idle_exit_s)
    return app.consumer, app.pipeline, app


def _bench_settings(settings: Settings, scratch: Settings, topic: str, group: str) -> Settings:
    return scratch.model_copy(
        update={
            "input_topic": topic,
            "dlq_topic": f"{topic}.dlq",
            "decisions_topic": f"{topic}.decisions",
            "consumer_group": group,
            "labels_topic": "",
        }
    )


def measure_consumer(settings: Settings, topic: str, count: int) -> tuple[_Probe, Any]:
    """Run the real consumer over a pre-filled topic until it decided ``count`` payments."""
    with scratch_database(settings, "consume") as scratch:
        run = _bench_settings(settings, scratch, topic, f"payscore-bench-{uuid.uuid4().hex[:8]}")
        consumer, pipeline, app = build_consumer(run, max_messages=count, idle_exit_s=120)
        probe = _Probe(pipeline)
        try:
            consumer.run()
        finally:
            app.close()
        return probe, consumer.stats.latency_percentiles()


def paced_producer(
    settings: Settings,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    rate: float,
    start_at: float = 0.0,
) -> float:
    """Send ``(key, value)`` messages at ``rate``/s (run in its own process) from wall time
    ``start_at`` on; returns the achieved rate.

    Like a gateway would: the producer lingers up to 5 ms to batch sends (the Java client's
    default since Kafka 4.0). The latency counted starts at ``send()``, so the linger is in it.
    """
    producer = make_producer(settings, linger_ms=PACED_LINGER_MS)
    try:
        # Fetch the topic's metadata now: the first send() would otherwise wait for it while
        # the pacer's clock runs, and the first quarter second of payments would leave late.
        producer.partitions_for(topic)
        time.sleep(max(start_at - time.time(), 0.0))
        pacer = Pacer(rate)
        started = time.perf_counter()
        for key, value in messages:
            pacer.wait()
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
        return len(messages) / max(time.perf_counter() - started, 1e-9)
    finally:
        producer.close(timeout=5)


def paced_topic() -> str:
    return f"payscore-bench-{uuid.uuid4().hex[:10]}-paced"


def measure_paced(
    settings: Settings,
    items: Sequence[SourceItem],
    rate: float,
    partitions: int,
    topic: str | None = None,
) -> tuple[_Probe, float]:
    """Offered load at ``rate``/s into a live consumer; end-to-end send-to-commit latency.

    The paced producer runs in a separate process so that it does not compete with the
    consumer for this interpreter's GIL (a real producer is another program). ``topic`` is
    best created well before (``run_bench`` does): a consumer that joins a topic created a
    moment ago can see its metadata change and rebalance at once, and kafka-python 3.0 was
    seen to hang in such a rebalance. The caller decides how many of the earliest-sent
    latencies to leave out (``run_bench`` drops its ``PACED_RAMP_S`` ramp).
    """
    topic = topic or paced_topic()
    ensure_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"], partitions)
    # Serialised here, before anything is measured; the paced list reaches the producer
    # process a second before its first send, so moving it costs the consumer nothing.
    encoded = [(i.payment.customer_id.encode(), payment_to_json(i.payment)) for i in items]
    warm, paced = encoded[:WARMUP], encoded[WARMUP:]
    try:
        with scratch_database(settings, "paced") as scratch:
            group = f"payscore-bench-{uuid.uuid4().hex[:8]}"
            run = _bench_settings(settings, scratch, topic, group)
            consumer, pipeline, app = build_consumer(run, max_messages=len(items), idle_exit_s=30)
            worker = threading.Thread(target=consumer.run, name="bench-consumer", daemon=True)
            spawn = multiprocessing.get_context("spawn")
            try:
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    probe = _Probe(pipeline, since_ms=float("inf"))
                    worker.start()
                    pool.submit(paced_producer, settings, topic, warm, 0).result(timeout=120)
                    _wait(lambda: probe.decided >= len(warm) or not worker.is_alive(), 120)
                    start_at = time.time() + PACED_HANDOVER_S
                    # Kafka timestamps are whole milliseconds: a first send in the very
                    # millisecond of start_at must still count.
                    probe.since_ms = math.floor(start_at * 1000)
                    job = pool.submit(paced_producer, settings, topic, paced, rate, start_at)
                    sent_rate = job.result(timeout=120 + 2 * len(paced) / rate)
                worker.join(timeout=60 + len(paced) / rate)
            finally:
                consumer.request_stop()
                worker.join(timeout=30)
                app.close()
            return probe, sent_rate
    finally:
        _delete_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"])


def _wait(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise ServiceUnavailable("the benchmark consumer did not start deciding in time")
        time.sleep(0.05)


def _delete_topics(settings: Settings, topics: list[str]) -> None:
    try:
        admin = make_admin(settings)
        try:
            existing = set(admin.list_topics())
            doomed = [t for t in topics if t in existing]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()
    except Exception as e:  # a leftover scratch topic is untidy, not a failure
        log.warning("could not delete benchmark topics %s: %s", topics, e)


def run_bench(
    settings: Settings, options: BenchOptions, step: Callable[[str], None] = lambda _s: None
) -> BenchReport:
    """Run the measurements in order and return the figures."""
    from payscore.core.model import load_artifact
    from payscore.stream.sources import simulated_source

    load_artifact(settings.model_path)  # fail before any work if there is no usable model
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

        # The ceiling is measured on both sides of the consumer run and averaged: on a shared
        # machine it moved by up to 40 % between runs a minute apart.
        step(f"2/4 database ceiling: batched INSERTs of {options.batch_size}")
        payments = [i.payment for i in main]
        before = measure_db_ceiling(settings, payments, options.batch_size)

        step("3/4 consumer over the pre-filled topic, then the ceiling again")
        probe, latency = measure_consumer(settings, topic, len(main))
        after = measure_db_ceiling(settings, payments, options.batch_size)
        report.db_ceiling = (before + after) / 2
        report.notes.append(
            f"database ceiling {before:,.0f} rows/s before the consumer run, {after:,.0f} after"
        )
        report.consumer_rate, report.consumer_decided = probe.rate, probe.decided
        report.consumer_latency_ms = latency
        if probe.first is not None and probe.last is not None:
            span = probe.last - probe.first
            report.notes.append(
                f"consumer time over {span:.1f} s: main thread prepare (parse, dedupe, features, "
                f"model, rules) {probe.prepare_s:.1f} s, database write {probe.write_s:.1f} s "
                f"(writer thread and process, overlapping the main thread)"
            )
        if probe.decided < len(main):
            report.notes.append(f"consumer decided only {probe.decided} of {len(main)}")
    except BaseException:
        if paced:
            _delete_topics(settings, [paced, f"{paced}.dlq", f"{paced}.decisions"])
        raise
    finally:
        _delete_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"])

    if options.rate and rest:
        measured = len(rest) - WARMUP - ramp_n
        step(
            f"4/4 paced load: {measured} payments at {options.rate:g}/s "
            f"(after {ramp_n} sent at that rate to reach steady load)"
        )
        paced_probe, sent_rate = measure_paced(settings, rest, options.rate, partitions, paced)
        latencies = paced_probe.latencies_after(ramp_n)
        report.paced_sent_rate = sent_rate
        report.paced_decided = len(latencies)
        if report.paced_decided < measured:
            report.notes.append(f"paced run: {report.paced_decided} of {measured} decided in time")
        report.paced_latency_ms = percentiles_ms(latencies)
    return report
