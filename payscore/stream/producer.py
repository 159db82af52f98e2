"""``payscore produce`` as a library: honest pacing, test-data faults, sending.

Sources (``stream/sources.py``) yield ``SourceItem`` (a payment and, when known, its fraud
label) in event-time order: the handbook's simulated world or a file. ``produce()``
sends them as canonical JSON keyed by customer id, optionally corrupting or duplicating a
deterministic fraction (for tests and demos) and publishing fraud labels 7 days late in event
time. The CLI in payscore/cli/produce.py only parses flags and draws progress.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kafka.errors import KafkaError

from payscore.config import Settings
from payscore.core.schema import Payment
from payscore.core.schema import payment_to_json as _to_json
from payscore.errors import ServiceUnavailable
from payscore.stream.kafka import describe_servers, ensure_topics, make_producer
from payscore.stream.sources import SourceItem
from payscore.stream.stats import LATENCY_BUCKETS_S, Buckets

log = logging.getLogger(__name__)

LABEL_DELAY = timedelta(days=7)  # chargebacks arrive about a week after the payment
BAD_KINDS = ("invalid_json", "negative_amount", "missing_field", "naive_timestamp", "non_utf8")
#: If the sender falls this far behind its schedule, it re-anchors instead of bursting.
MAX_LAG_S = 1.0
_DUPLICATE_WINDOW = 50  # a duplicate re-sends one of the last N payments


@dataclass(frozen=True)
class ProduceOptions:
    topic: str
    rate: float = 100.0  # payments per second; 0 = as fast as possible
    count: int | None = None  # stop after this many source payments; None = until the end
    bad_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int = 0
    labels: bool = False
    labels_topic: str = "payments.labels"
    partitions: int | None = None


@dataclass
class ProduceStats:
    """Counts of one run. ``sent`` counts every message on the input topic."""

    sent: int = 0
    payments: int = 0
    bad: int = 0
    duplicates: int = 0
    labels: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    bad_by_kind: Counter[str] = field(default_factory=Counter)
    acked: int = 0  # acknowledged by the broker
    failed: int = 0  # refused or timed out: the run stops with an error
    send_latency_s: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS_S))
    # Acknowledgement latencies not yet in the histogram: appended by kafka-python's IO
    # thread, moved into ``send_latency_s`` a batch at a time (one numpy call, not one each).
    _unobserved: list[float] = field(default_factory=list, repr=False)

    def observe_latencies(self) -> None:
        """Move the latencies heard so far into the histogram (main loop or a scrape)."""
        taken, self._unobserved = self._unobserved, []
        self.send_latency_s.observe(taken)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


# ------------------------------------------------------------------------------ pacing


def slot_time(start: float, index: int, rate: float) -> float:
    """When message ``index`` (0-based) is due: evenly spaced, ``1/rate`` apart."""
    if rate <= 0:
        return start
    return start + index / rate


class Pacer:
    """Sends on a schedule of evenly spaced slots; ``rate <= 0`` never waits.

    A short stall is caught up (the schedule holds), a long one re-anchors the schedule so the
    producer does not fire a burst to make up for lost time.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._index = 0

    def wait(self) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        if self._start is None:
            self._start, self._index = now, 0
        due = slot_time(self._start, self._index, self.rate)
        if now - due > MAX_LAG_S:
            self._start, self._index, due = now, 0, now
        if due > now:
            self._sleep(due - now)
        self._index += 1


# ------------------------------------------------------------------------------ faults


def is_selected(index: int, rate: float, phase: float) -> bool:
    """Systematic sampling: exactly ``rate`` of the indices, evenly spread, shifted by phase."""
    if rate <= 0:
        return False
    return math.floor((index + 1) * rate + phase) > math.floor(index * rate + phase)


def make_bad_message(payment: Payment, kind: str) -> bytes:
    """A malformed variant of a payment message; ``parse_payment`` rejects every kind."""
    body = json.loads(_to_json(payment))
    if kind == "invalid_json":
        return _to_json(payment)[:-7]  # truncated mid-object
    if kind == "negative_amount":
        body["amount"] = "-" + body["amount"]
    elif kind == "missing_field":
        del body["customer_id"]
    elif kind == "naive_timestamp":
        body["event_time"] = payment.event_time.replace(tzinfo=None).isoformat()
    elif kind == "non_utf8":
        return _to_json(payment).replace(b'"currency"', b'"curr\xff\xfeency"')
    else:
        raise ValueError(f"unknown bad-message kind {kind!r}")
    return json.dumps(body, separators=(",", ":")).encode()


class FaultInjector:
    """Decides, deterministically from a seed, which messages are corrupted or duplicated."""

    def __init__(self, bad_rate: float, duplicate_rate: float, seed: int) -> None:
        for name, value in (("bad_rate", bad_rate), ("duplicate_rate", duplicate_rate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        self.bad_rate, self.duplicate_rate = bad_rate, duplicate_rate
        self._rng = random.Random(seed)
        self._bad_phase = self._rng.random()
        self._dup_phase = self._rng.random()

    def corrupt(self, index: int, payment: Payment) -> tuple[str, bytes] | None:
        """(kind, bytes) when message ``index`` should be malformed, else None."""
        if not is_selected(index, self.bad_rate, self._bad_phase):
            return None
        kind = self._rng.choice(BAD_KINDS)
        return kind, make_bad_message(payment, kind)

    def duplicate(self, index: int, recent: deque[Payment]) -> Payment | None:
        """A recent payment to send again after message ``index``, or None."""
        if not recent or not is_selected(index, self.duplicate_rate, self._dup_phase):
            return None
        return recent[self._rng.randrange(len(recent))]


# ------------------------------------------------------------------------------ producing


def label_message(transaction_id: str, is_fraud: bool, known_at: datetime) -> bytes:
    """The labels-topic message: {"transaction_id", "is_fraud", "known_at"}."""
    body = {
        "transaction_id": transaction_id,
        "is_fraud": is_fraud,
        "known_at": known_at.astimezone(timezone.utc).isoformat(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


class _Sender:
    """Wraps the producer: counts acknowledgements (and their latency) and async failures
    instead of losing them."""

    def __init__(self, producer: Any, settings: Settings, stats: ProduceStats) -> None:
        self.producer, self.settings, self.stats = producer, settings, stats
        self.first_error: BaseException | None = None

    @property
    def failures(self) -> int:
        return self.stats.failed

    def _failed(self, error: BaseException) -> None:
        self.stats.failed += 1
        if self.first_error is None:
            self.first_error = error

    def _acked(self, sent_at: float, _metadata: Any) -> None:
        self.stats.acked += 1
        self.stats._unobserved.append(time.monotonic() - sent_at)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            future = self.producer.send(topic, key=key, value=value)
            future.add_callback(self._acked, time.monotonic()).add_errback(self._failed)
        except KafkaError as e:
            raise self.unavailable(e) from e
        if self.first_error is not None:
            raise self.unavailable(self.first_error)

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise self.unavailable(e) from e
        if self.first_error is not None:
            raise self.unavailable(self.first_error)

    def unavailable(self, error: BaseException) -> ServiceUnavailable:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return ServiceUnavailable(
            f"cannot send to Kafka at {describe_servers(self.settings)}: "
            f"{reason or type(error).__name__} ({self.failures} message(s) failed)"
        )


def produce(
    settings: Settings,
    source: Iterable[SourceItem],
    options: ProduceOptions,
    *,
    producer: Any = None,
    on_progress: Callable[[ProduceStats], None] | None = None,
    progress_every_s: float = 0.25,
    stats: ProduceStats | None = None,
) -> ProduceStats:
    """Send ``source`` to ``options.topic``; Ctrl-C stops after a flush. Returns the counts
    (``stats`` if given: the metrics endpoint reads it while the run goes on)."""
    topics = [options.topic] + ([options.labels_topic] if options.labels else [])
    ensure_topics(settings, topics, options.partitions)
    own = producer is None
    stats = stats if stats is not None else ProduceStats()
    sender = _Sender(producer if producer is not None else make_producer(settings), settings, stats)
    faults = FaultInjector(options.bad_rate, options.duplicate_rate, options.seed)
    pacer = Pacer(options.rate)
    recent: deque[Payment] = deque(maxlen=_DUPLICATE_WINDOW)
    pending: list[tuple[datetime, str]] = []  # (known_at, transaction id) of frauds
    started = last_report = time.monotonic()
    index = 0
    first = True
    try:
        for item in source:
            if options.count is not None and index >= options.count:
                break
            payment = item.payment
            if first:  # the rate is measured from the first payment, not the source loading
                started = last_report = time.monotonic()
                first = False
            if options.labels:
                _release_labels(sender, options.labels_topic, pending, payment.event_time, stats)
            pacer.wait()
            key = payment.customer_id.encode()
            bad = faults.corrupt(index, payment)
            if bad is not None:
                sender.send(options.topic, key, bad[1])
                stats.bad += 1
                stats.bad_by_kind[bad[0]] += 1
            else:
                sender.send(options.topic, key, _to_json(payment))
                stats.payments += 1
                recent.append(payment)
                if options.labels and item.is_fraud:
                    heapq.heappush(
                        pending, (payment.event_time + LABEL_DELAY, payment.transaction_id)
                    )
            stats.sent += 1
            again = faults.duplicate(index, recent)
            if again is not None:
                sender.send(options.topic, again.customer_id.encode(), _to_json(again))
                stats.duplicates += 1
                stats.sent += 1
            index += 1
            now = time.monotonic()
            if now - last_report >= progress_every_s:
                stats.elapsed_s, last_report = now - started, now
                stats.observe_latencies()
                if on_progress is not None:
                    on_progress(stats)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        try:
            sender.flush()
        finally:
            stats.elapsed_s = time.monotonic() - started
            stats.observe_latencies()
            if own:
                sender.producer.close(timeout=5)
    if on_progress is not None:
        on_progress(stats)
    log.info(
        "produced %d messages (%d bad, %d duplicates, %d labels) to %s",
        stats.sent,
        stats.bad,
        stats.duplicates,
        stats.labels,
        options.topic,
    )
    return stats


def _release_labels(
    sender: _Sender,
    topic: str,
    pending: list[tuple[datetime, str]],
    stream_time: datetime,
    stats: ProduceStats,
) -> None:
    """Publish every label whose known_at the stream's event time has passed."""
    while pending and pending[0][0] <= stream_time:
        known_at, transaction_id = heapq.heappop(pending)
        sender.send(topic, transaction_id.encode(), label_message(transaction_id, True, known_at))
        stats.labels += 1
