"""The Kafka consume loop: poll a batch, score it, write it with its offsets, then commit.

Exactly-once effect: decisions and the next offsets are written in one database transaction,
and on every partition assignment the consumer seeks to the offsets stored in the database
(not Kafka's), so a crash at any moment neither loses nor repeats a decision. Kafka commits
are only a courtesy for monitoring tools. See docs/pipeline.md.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine

from payscore.config import Settings
from payscore.core.features import FeatureEngine
from payscore.errors import ServiceUnavailable
from payscore.pipeline import Pipeline, PreparedBatch
from payscore.store import state
from payscore.store.writer import utcnow
from payscore.stream import dlq
from payscore.stream.kafka import make_consumer, make_producer
from payscore.stream.stats import ConsumerStats

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 5.0
DAY_S = 86_400.0
SESSION_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class RunResult:
    decided: int
    duplicates: int
    dead_letters: int
    by_status: dict[str, int]
    rate: float


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO loop: only bookkeeping here, the work happens on the loop."""

    def __init__(self, owner: StreamConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner._on_assigned(set(assigned))

    def on_partitions_lost(self, lost: Any) -> None:
        self.owner._on_revoked(set(lost))


class StreamConsumer:
    """One consumer process: a Kafka consumer in a group, a pipeline, a database."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        db: Engine,
        new_engine: Callable[[], FeatureEngine],
        *,
        max_messages: int | None = None,
        idle_exit_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.db = db
        self.new_engine = new_engine
        self.max_messages = max_messages
        self.idle_exit_s = idle_exit_s
        self.group = pipeline.group
        self.topic = settings.input_topic
        self.stats = ConsumerStats()
        self._stop = False
        self._pending: set[TopicPartition] = set()  # assigned, not yet positioned/rebuilt
        self._buffer: list[tuple[Any, float, datetime]] = []
        self._consumer: Any = None
        self._producer: Any = None
        self._state_day: float | None = None  # event-time day of the last state refresh
        self._others_cursor = 0  # scored_transactions.id read for other consumers' payments
        self._labels_known_at: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, *_args: Any) -> None:
        """Finish the current batch, then exit (SIGINT/SIGTERM handler)."""
        self._stop = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> RunResult:
        # Heartbeats come from kafka-python's background IO thread, so a database outage only
        # costs group membership after max_poll_interval_ms (5 min; then we rejoin and re-seek
        # from the database offsets). A 10 s session hands a crashed consumer's partitions to
        # the others quickly.
        self._consumer = make_consumer(
            self.settings,
            self.group,
            max_poll_records=self.settings.batch_size,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 4,
        )
        self._producer = make_producer(self.settings)
        topics = [self.topic]
        labels_topic = self.pipeline.labels_topic
        try:
            if labels_topic and labels_topic in self._consumer.topics():
                topics.append(labels_topic)
            else:
                self.pipeline.labels_topic = None
            self._consumer.subscribe(topics=topics, listener=_Listener(self))
            self._loop()
        finally:
            for client in (self._consumer, self._producer):
                try:
                    client.close(timeout=5) if client is self._producer else client.close(
                        autocommit=False
                    )
                except Exception:  # closing is best effort on the way out
                    log.debug("error closing a Kafka client", exc_info=True)
        log.info("stopped: %s", self.stats.summary(None))
        return RunResult(
            self.stats.decided,
            self.stats.duplicates,
            self.stats.dead_letters,
            dict(self.stats.by_status),
            self.stats.overall_rate(),
        )

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while not self._stop:
            self._fill_batch()
            if self._pending:
                self._retry(self._catch_up, "position assigned partitions")
                continue
            if self.stats.due(self.settings.log_interval_seconds):
                log.info("%s", self.stats.summary(self._lag()))
            if not self._buffer:
                if self.idle_exit_s is not None and (
                    time.monotonic() - idle_since >= self.idle_exit_s
                ):
                    log.info("no messages for %.0f s; exiting", self.idle_exit_s)
                    return
                continue
            idle_since = time.monotonic()
            if not self._process(self._buffer):
                return  # asked to stop while the database was down: nothing was committed
            self._buffer = []
            if self.max_messages is not None and self.stats.decided >= self.max_messages:
                log.info("decided %d messages; exiting", self.stats.decided)
                return

    # -- one batch ------------------------------------------------------------------------

    def _fill_batch(self) -> None:
        """Poll until the batch is full or max_wait_ms has passed since the first poll."""
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(self._buffer) < self.settings.batch_size and not self._stop:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            try:
                polled = self._consumer.poll(
                    timeout_ms=remaining_ms,
                    max_records=self.settings.batch_size - len(self._buffer),
                )
            except KafkaError as e:
                log.warning("Kafka poll failed (%s); retrying", e)
                time.sleep(1.0)
                break
            mono, wall = time.monotonic(), utcnow()
            for tp, records in polled.items():
                if tp in self._pending:
                    continue  # fetched before we positioned it: read again after the seek
                self._buffer.extend((r, mono, wall) for r in records)
            if self._pending:
                break

    def _process(self, buffered: Sequence[tuple[Any, float, datetime]]) -> bool:
        records = [r for r, _, _ in buffered]
        received = [w for _, _, w in buffered]
        self._maybe_refresh(records)
        batch = self._retry(lambda: self.pipeline.prepare(records, received), "read the database")
        if batch is None:
            return False
        if self._retry(lambda: self._publish(batch), "publish to Kafka") is None:
            return False
        result = self._retry(lambda: self.pipeline.write(batch), "write the batch")
        if result is None:
            return False
        committed = time.monotonic()
        self._commit_kafka(batch)
        self.stats.record_batch(
            result.decided,
            batch.status_counts(),
            result.duplicates,
            result.dead_letters,
            (m for _, m, _ in buffered),
            committed,
            labels=len(batch.labels),
        )
        return True

    def _publish(self, batch: PreparedBatch) -> bool:
        """Dead letters, and decisions when enabled, sent and flushed before the DB commit.

        A crash after this and before the commit sends them again on restart: at-least-once.
        """
        items = [
            dlq.dead_letter_for_record(r.message, kind=r.kind, message=r.reason, field=r.field)
            for r in batch.rejected
        ]
        if items:
            dlq.send_dead_letters(self._producer, self.settings.dlq_topic, items)
        if self.settings.publish_decisions and batch.decided:
            try:
                for p, d in batch.decided:
                    self._producer.send(
                        self.settings.decisions_topic,
                        key=p.customer_id.encode(),
                        value=decision_message(p.customer_id, d, p.event_time),
                    )
                self._producer.flush(timeout=30)
            except KafkaError as e:
                raise ServiceUnavailable(f"cannot publish decisions: {e}") from e
        return True

    def _commit_kafka(self, batch: PreparedBatch) -> None:
        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
            for (_, t, p), o in batch.offsets.items()
        }
        try:
            self._consumer.commit(offsets=offsets)
        except Exception as e:  # the database holds the true offsets; this is informational
            log.info("Kafka offset commit skipped (%s); database offsets are authoritative", e)

    def _retry(self, fn: Callable[[], T], what: str) -> T | None:
        """Call ``fn`` until it stops raising ServiceUnavailable; None if asked to stop."""
        delay = 0.2
        while True:
            try:
                return fn()
            except ServiceUnavailable as e:
                if self._stop:
                    log.warning(
                        "stopping without finishing the batch (%s): it will be read again", e
                    )
                    return None
                log.warning("cannot %s: %s; retrying in %.1f s", what, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    # -- rebalances and state -------------------------------------------------------------

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Called inside poll(), so no batch is half-written: unscored buffered records of the
        # revoked partitions are dropped (their offsets were never stored, the new owner reads
        # them). Customer state is rebuilt at the next assignment.
        self._buffer = [b for b in self._buffer if _tp(b[0]) not in revoked]
        self._pending -= revoked

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Database reads do not belong on the IO loop: pause, and position them on the loop.
        self._pending |= assigned
        self._consumer.pause(*assigned)
        self._buffer = [b for b in self._buffer if _tp(b[0]) not in assigned]

    def _catch_up(self) -> bool:
        """Seek newly assigned partitions to the database offsets, rebuild state, resume."""
        pending = set(self._pending)
        for topic in {tp.topic for tp in pending}:
            stored = self.pipeline.writer.read_offsets(self.group, topic)
            for tp in (tp for tp in pending if tp.topic == topic):
                if tp.partition in stored:
                    self._consumer.seek(tp, stored[tp.partition])
                else:  # never written by this group: from the beginning of the partition
                    self._consumer.seek_to_beginning(tp)
        self._rebuild_state()
        self._pending -= pending
        self._consumer.resume(*pending)
        log.info("positioned %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(pending)))
        return True

    def _owned_partitions(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}

    def _rebuild_state(self) -> None:
        """Fresh engine from the database: every stored payment of the last 37 days of event
        time (all partitions, for terminal state), then forget customers we do not own."""
        started = time.monotonic()
        engine = self.new_engine()
        latest = state.latest_event_time(self.db, self.topic)
        replayed = 0
        if latest is not None:
            since = state.history_start(latest, engine.label_delay_days)
            labels = state.load_labels(self.db, known_after=since)
            engine.add_labels(labels)
            self._labels_known_at = max((lb.known_at for lb in labels), default=None)
            history = state.load_history(self.db, self.topic, since)
            for part in state.iter_chunks(history):
                engine.transform_columns(
                    history.transaction_ids[part],
                    history.customer_ids[part],
                    history.terminal_ids[part],
                    history.amounts[part],
                    history.times[part],
                )
            owned = self._owned_partitions()
            pairs = zip(history.customer_ids, history.partitions, strict=True)
            mine = {c for c, p in pairs if p in owned}
            engine.forget_customers(lambda c: c in mine)
            self._others_cursor = history.last_id
            self._state_day = latest.replace(tzinfo=timezone.utc).timestamp() // DAY_S
            replayed = len(history)
        self.pipeline.scorer.engine = engine
        log.info(
            "rebuilt feature state from %d stored payments in %.1f s",
            replayed,
            time.monotonic() - started,
        )

    def _maybe_refresh(self, records: Sequence[Any]) -> None:
        """Once per event-time day: new labels and other consumers' payments (terminals)."""
        newest = max((r.timestamp for r in records if r.topic == self.topic), default=None)
        if newest is None:
            return
        day = (newest / 1000) // DAY_S
        if self._state_day is None:
            self._state_day = day
            return
        if day <= self._state_day:
            return
        self._state_day = day
        try:
            engine = self.pipeline.scorer.engine
            labels = state.load_labels(self.db, known_after=self._labels_known_at)
            engine.add_labels(labels)
            if labels:
                self._labels_known_at = max(lb.known_at for lb in labels)
            owned = self._owned_partitions()
            since = datetime.fromtimestamp(newest / 1000, timezone.utc).replace(tzinfo=None)
            since -= timedelta(days=state.HISTORY_DAYS + engine.label_delay_days)
            others = state.load_history(
                self.db,
                self.topic,
                since,
                exclude_partitions=owned,
                after_id=self._others_cursor,
            )
            if len(others):
                engine.transform_columns(
                    others.transaction_ids,
                    others.customer_ids,
                    others.terminal_ids,
                    others.amounts,
                    others.times,
                )
                theirs = set(others.customer_ids)
                engine.forget_customers(lambda c: c not in theirs)
                self._others_cursor = max(self._others_cursor, others.last_id)
        except ServiceUnavailable as e:
            log.warning("state refresh skipped: %s", e)

    def _lag(self) -> int | None:
        try:
            assigned = list(self._consumer.assignment())
            if not assigned:
                return 0
            ends = self._consumer.end_offsets(assigned)
            return sum(max(ends[tp] - self._consumer.position(tp), 0) for tp in assigned)
        except Exception:  # lag is informational only
            return None


def _tp(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def decision_message(customer_id: str, d: Any, event_time: datetime) -> bytes:
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
            "decided_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        },
        separators=(",", ":"),
    ).encode()
