"""The consumer's writer thread: confirms a batch's Kafka output, then writes it, in order.

The main loop polls and scores batch N+1 while this thread writes batch N (MySQL I/O releases
the GIL, so the two overlap). One thread and a queue of depth one keep the batches in order
and bound what is in memory; a batch whose write is abandoned (stop requested while the
database is down) abandons every later one too, because a later batch's offsets would
otherwise cover the lost one. Kafka offsets are committed by the main loop (kafka-python's
consumer is not thread-safe), only for batches this thread reports as written.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from kafka.errors import KafkaError, MessageSizeTooLargeError

from payscore.errors import PayscoreError, ServiceUnavailable
from payscore.pipeline import PreparedBatch
from payscore.store.writer import WriteResult
from payscore.stream import dlq
from payscore.stream.stats import ConsumerStats, created_to_commit_s

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 5.0
FLUSH_TIMEOUT_S = 30.0
_TICK_S = 0.1  # how often a blocked put/wait looks at the stop flag
#: Failed attempts to publish one batch's dead letters for a reason that is not an outage
#: (topic missing, not authorized, refused by the broker) before the consumer stops: about a
#: minute of backoff. The batch is not committed, so it is read again after the fix.
DLQ_MAX_ATTEMPTS = 15
#: The smallest dead-letter budget tried after the broker refused dead letters as too large.
MIN_DEAD_LETTER_BYTES = 64 * 1024


class DeadLettersUnpublishable(PayscoreError):
    """Dead letters could not be published for a reason that waiting does not cure."""

    exit_code = 3


@dataclass
class InFlight:
    """A prepared batch on its way to the database, with what the stats need afterwards."""

    batch: PreparedBatch
    polled_at: list[float]  # monotonic time each message was returned by poll()
    records: Sequence[Any] = ()  # the Kafka records, for their CreateTime (send to commit)
    # Decisions sent to Kafka by the main loop: (future, topic, key, value), kept to resend.
    sent: list[tuple[Any, str, bytes, bytes]] = field(default_factory=list)
    result: WriteResult | None = None
    committed_at: float = 0.0


def retry(
    fn: Callable[[], T],
    what: str,
    stopping: Callable[[], bool],
    counts: dict[str, int] | None = None,
) -> T | None:
    """Call ``fn`` until it stops raising ServiceUnavailable; None if asked to stop meanwhile.

    Each failed attempt is counted in ``counts`` under ``what`` with underscores for spaces
    (``ConsumerStats.retries``, the ``payscore_retries_total`` metric).
    """
    delay = 0.2
    operation = what.replace(" ", "_")
    while True:
        try:
            return fn()
        except ServiceUnavailable as e:
            if counts is not None:
                counts[operation] = counts.get(operation, 0) + 1
            if stopping():
                log.warning("stopping without finishing the batch (%s): it will be read again", e)
                return None
            log.warning("cannot %s: %s; retrying in %.1f s", what, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


class BatchWriterThread:
    """Writes submitted batches in order on one background thread (see the module doc)."""

    def __init__(
        self,
        write: Callable[[PreparedBatch], WriteResult],
        release: Callable[[PreparedBatch], None],
        producer: Any,
        dlq_topic: str,
        stopping: Callable[[], bool],
        new_producer: Callable[[], Any] | None = None,
        *,
        dlq_max_bytes: int = dlq.DEFAULT_MAX_DEAD_LETTER_BYTES,
        dlq_topic_exists: Callable[[], bool | None] | None = None,
        create_dlq_topic: Callable[[], object] | None = None,
        stats: ConsumerStats | None = None,
    ) -> None:
        self._write = write
        self._stats = stats  # retries, write and send-to-commit latencies, for the metrics
        self._retries = None if stats is None else stats.retries
        self.dlq_max_bytes = dlq_max_bytes  # lowered if the broker refuses a dead letter's size
        self._dlq_topic_exists = dlq_topic_exists  # None: cannot tell (broker unreachable)
        self._create_dlq_topic = create_dlq_topic  # None: a deleted topic is not re-created
        self._dlq_failures = 0
        self._release = release
        self.producer = producer  # replaced when it stops delivering (see _confirm)
        self._new_producer = new_producer
        self._dlq_topic = dlq_topic
        self._stopping = stopping
        self._queue: queue.Queue[InFlight | None] = queue.Queue(maxsize=1)
        self._done: deque[InFlight] = deque()
        self._lock = threading.Condition()
        self._submitted = 0
        self._finished = 0
        self.abandoned = False  # a batch was given up: nothing after it may be written
        self.given_up = 0  # messages in batches given up: read again by the next consumer
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="payscore-writer", daemon=True)
        self._thread.start()

    # -- main-loop side --------------------------------------------------------------------

    def submit(self, item: InFlight) -> bool:
        """Queue a batch (blocks while the previous one is still queued); False if given up."""
        with self._lock:
            self._submitted += 1
        while not self.abandoned:
            try:
                self._queue.put(item, timeout=_TICK_S)
                return True
            except queue.Full:
                continue
        self._give_up(item)
        self._mark_finished()  # never reached the thread
        return False

    def busy(self) -> bool:
        with self._lock:
            return self._finished < self._submitted

    def drain(self) -> bool:
        """Wait until every submitted batch is written (or abandoned); True if all written."""
        with self._lock:
            while self._finished < self._submitted:
                self._lock.wait(_TICK_S)
        return not self.abandoned

    def completed(self) -> list[InFlight]:
        """Batches written since the last call, oldest first."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def close(self) -> None:
        """Finish what was submitted (unless abandoned), then end the thread."""
        self.drain()
        self._queue.put(None)
        self._thread.join(timeout=30)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if not self.abandoned:
                    self._emit(item)
                if self.abandoned:
                    self._give_up(item)
            except BaseException as e:  # noqa: BLE001 - surfaced on the main loop
                if isinstance(e, PayscoreError):
                    log.error("%s", e)  # a known condition: one line, no traceback
                else:
                    log.exception("the batch writer failed")
                self.error = e
                self.abandoned = True
                self._give_up(item)
            finally:
                self._mark_finished()

    def _emit(self, item: InFlight) -> None:
        stop, counts = self._stopping, self._retries
        if (
            item.batch.rejected
            and retry(lambda: self._send_dead_letters(item), "publish dead letters", stop, counts)
            is None
        ):
            self.abandoned = True
            return
        if (
            item.sent
            and retry(lambda: self._confirm(item), "publish decisions", stop, counts) is None
        ):
            self.abandoned = True
            return
        result = retry(lambda: self._timed_write(item.batch), "write the batch", stop, counts)
        if result is None:
            self.abandoned = True
            return
        item.result, item.committed_at = result, time.monotonic()
        if self._stats is not None and self._stats.track_send_to_commit:
            rows, not_decided = item.batch.rows, result.duplicate_ids
            latencies = created_to_commit_s(item.records, rows, not_decided, time.time())
            self._stats.send_to_commit_s.observe(latencies)
        self._done.append(item)

    def _timed_write(self, batch: PreparedBatch) -> WriteResult:
        """One write attempt, timed for the write-latency histogram when it succeeds."""
        started = time.monotonic()
        result = self._write(batch)
        if self._stats is not None:
            self._stats.write_s.observe([time.monotonic() - started])
        return result

    def _send_dead_letters(self, item: InFlight) -> int:
        """Publish the batch's dead letters; outages are retried by the caller for as long as
        they last, other failures at most ``DLQ_MAX_ATTEMPTS`` times (see docs/pipeline.md)."""
        items = [
            dlq.dead_letter_for_record(
                r.message,
                kind=r.kind,
                message=r.reason,
                field=r.field,
                max_bytes=self.dlq_max_bytes,
            )
            for r in item.batch.rejected
        ]
        try:
            sent = dlq.send_dead_letters(self.producer, self._dlq_topic, items)
        except ServiceUnavailable as e:
            self._dead_letters_failed(e)
            raise
        self._dlq_failures = 0
        return sent

    def _dead_letters_failed(self, error: ServiceUnavailable) -> None:
        cause = error.__cause__
        if isinstance(cause, MessageSizeTooLargeError) and (
            self.dlq_max_bytes > MIN_DEAD_LETTER_BYTES
        ):
            # The topic's max.message.bytes is below our budget: cut dead letters further.
            self.dlq_max_bytes = max(MIN_DEAD_LETTER_BYTES, self.dlq_max_bytes // 2)
            log.warning(
                "the broker refused a dead letter as too large; dead letters are now cut to "
                "%d bytes",
                self.dlq_max_bytes,
            )
            return
        retriable = bool(getattr(cause, "retriable", False))
        if retriable and self._dlq_topic_exists is not None and self._dlq_topic_exists() is False:
            if self._create_dlq_topic is not None:
                log.warning("dead-letter topic %s does not exist; creating it", self._dlq_topic)
                try:
                    self._create_dlq_topic()
                    return
                except PayscoreError as e:
                    log.warning("cannot create dead-letter topic %s: %s", self._dlq_topic, e)
            retriable = False  # a timeout on a topic that is not there: waiting will not help
        if retriable:
            return  # an outage: retried as long as it lasts, like the database
        self._dlq_failures += 1
        if self._dlq_failures >= DLQ_MAX_ATTEMPTS:
            raise DeadLettersUnpublishable(
                f"cannot publish dead letters to topic {self._dlq_topic!r} after "
                f"{self._dlq_failures} attempts: {error}; stopping without committing the "
                f"batch, so its messages are read again once this is fixed"
            ) from error

    def _confirm(self, item: InFlight) -> bool:
        """Wait for the broker's acknowledgement of every decision sent; resend the failed.

        After a failure the producer is replaced before resending: kafka-python's idempotent
        producer can stay stuck after its batches expired during a broker outage.
        """
        try:
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
            unacked = [s for s in item.sent if s[0] is None or not s[0].succeeded()]
        except KafkaError as e:
            unacked, reason = list(item.sent), f"{type(e).__name__}: {e}"
        else:
            if not unacked:
                item.sent = []
                return True
            reason = f"{len(unacked)} decisions not acknowledged"
        self._replace_producer()
        resent = []
        for _, topic, key, value in unacked:
            try:
                future = self.producer.send(topic, key=key, value=value)
            except KafkaError:
                future = None  # tried again at the next attempt
            resent.append((future, topic, key, value))
        item.sent = resent
        raise ServiceUnavailable(f"cannot publish decisions: {reason}")

    def _replace_producer(self) -> None:
        if self._new_producer is None:
            return
        old, self.producer = self.producer, self._new_producer()
        try:
            old.close(timeout=0)
        except Exception:  # the old client is being discarded either way
            log.debug("error closing a stuck producer", exc_info=True)

    def _give_up(self, item: InFlight) -> None:
        self.given_up += item.batch.size
        self._release(item.batch)

    def _mark_finished(self) -> None:
        with self._lock:
            self._finished += 1
            self._lock.notify_all()


def send_decisions(
    producer: Any, topic: str, batch: PreparedBatch
) -> list[tuple[Any, str, bytes, bytes]]:
    """Send a batch's decisions without waiting; the writer thread confirms them later.

    A send that fails at once is kept with no future: the writer thread sends it again.
    """
    decided_at = _iso_now()
    sent: list[tuple[Any, str, bytes, bytes]] = []
    for p, d in batch.decided:
        key = p.customer_id.encode()
        value = decision_message(p.customer_id, d, p.event_time, decided_at)
        try:
            future = producer.send(topic, key=key, value=value)
        except KafkaError as e:
            log.debug("decision send failed at once (%s); the writer resends it", e)
            future = None
        sent.append((future, topic, key, value))
    return sent


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def decision_message(
    customer_id: str, d: Any, event_time: datetime, decided_at: str | None = None
) -> bytes:
    """The decisions-topic message (JSON), keyed by customer id by the caller."""
    return json.dumps(
        {
            "transaction_id": d.transaction_id,
            "customer_id": customer_id,
            "status": d.status,
            "score": round(d.score, 6),
            "reasons": list(d.reasons),
            "model_version": d.model_version,
            "event_time": event_time.isoformat(),
            "decided_at": decided_at or _iso_now(),
        },
        separators=(",", ":"),
    ).encode()
