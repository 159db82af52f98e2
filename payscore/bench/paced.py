"""The paced half of ``payscore bench``: an offered load into a live consumer.

A separate process sends at the offered rate, as a payment gateway would; latency runs from
the Kafka send timestamp to the database commit.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from payscore.bench.loadgen import KAFKA_PYTHON, open_sender
from payscore.bench.probe import Probe
from payscore.bench.scratch import bench_settings, build_consumer, delete_topics, scratch_database
from payscore.config import Settings
from payscore.core.schema import payment_to_json
from payscore.errors import ServiceUnavailable
from payscore.stream.kafka import ensure_topics
from payscore.stream.producer import Pacer
from payscore.stream.sources import SourceItem

WARMUP = 200  # payments decided before the paced run starts (group join, state, JIT caches)
PACED_SECONDS = 20  # default length of the paced run
PACED_LINGER_MS = 5
PACED_HANDOVER_S = 1.0  # the paced messages reach the producer process before it starts
# The paced run's first seconds are sent at the offered rate but not counted: they take the
# consumer from idle to steady load (its first fetches after an idle wait), which is not the
# sustained latency the run measures.
PACED_RAMP_S = 2.0


def paced_producer(
    settings: Settings,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    rate: float,
    start_at: float = 0.0,
    generator: str = KAFKA_PYTHON,
) -> float:
    """Send ``(key, value)`` messages at ``rate``/s (run in its own process) from wall time
    ``start_at`` on; returns the achieved rate.

    Like a gateway would: the producer lingers up to 5 ms to batch sends (the Java client's
    default since Kafka 4.0). The latency counted starts at ``send()``, so the linger is in it.
    ``generator`` is a resolved name from ``bench/loadgen.py``.
    """
    sender = open_sender(settings, generator, topic, PACED_LINGER_MS)
    try:
        time.sleep(max(start_at - time.time(), 0.0))
        pacer = Pacer(rate)
        started = time.perf_counter()
        for key, value in messages:
            pacer.wait()
            sender.send(topic, key, value)
        sender.flush(30)
        return len(messages) / max(time.perf_counter() - started, 1e-9)
    finally:
        sender.close()


def paced_topic() -> str:
    return f"payscore-bench-{uuid.uuid4().hex[:10]}-paced"


def measure_paced(
    settings: Settings,
    items: Sequence[SourceItem],
    rate: float,
    partitions: int,
    topic: str | None = None,
    generator: str = KAFKA_PYTHON,
) -> tuple[Probe, float]:
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
            run = bench_settings(settings, scratch, topic, group)
            consumer, pipeline, app = build_consumer(run, max_messages=len(items), idle_exit_s=30)
            worker = threading.Thread(target=consumer.run, name="bench-consumer", daemon=True)
            spawn = multiprocessing.get_context("spawn")
            try:
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    probe = Probe(pipeline, since_ms=float("inf"))
                    worker.start()
                    warmup = pool.submit(paced_producer, settings, topic, warm, 0, 0.0, generator)
                    warmup.result(timeout=120)
                    _wait(lambda: probe.decided >= len(warm) or not worker.is_alive(), 120)
                    start_at = time.time() + PACED_HANDOVER_S
                    # Kafka timestamps are whole milliseconds: a first send in the very
                    # millisecond of start_at must still count.
                    probe.since_ms = math.floor(start_at * 1000)
                    job = pool.submit(
                        paced_producer, settings, topic, paced, rate, start_at, generator
                    )
                    sent_rate = job.result(timeout=120 + 2 * len(paced) / rate)
                worker.join(timeout=60 + len(paced) / rate)
            finally:
                consumer.request_stop()
                worker.join(timeout=30)
                app.close()
            return probe, sent_rate
    finally:
        delete_topics(settings, [topic, f"{topic}.dlq", f"{topic}.decisions"])


def _wait(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise ServiceUnavailable("the benchmark consumer did not start deciding in time")
        time.sleep(0.05)
