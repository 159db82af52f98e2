"""The Kafka consume loop: poll, score, hand the batch to the writer thread, commit.

Exactly-once effect: decisions and the next offsets are written in one database transaction,
and on every partition assignment the consumer seeks to the offsets stored in the database
(not Kafka's), so a crash at any moment neither loses nor repeats a decision. Batches are
written in order by one writer thread (``stream/batches.py``) while the next one is scored;
Kafka commits follow the database commits and are only a courtesy for monitoring tools.
Feature state is rebuilt from the database on assignment (``stream/rebuild.py``).
See docs/pipeline.md.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine

from payscore.config import Settings
from payscore.core.features import FeatureEngine
from payscore.core.model import ModelArtifact
from payscore.pipeline import Pipeline, build_scorer, register_model
from payscore.store.writer import utcnow
from payscore.stream.batches import (  # noqa: F401 - decision_message re-exported
    BatchWriterThread,
    InFlight,
    decision_message,
    retry,
    send_decisions,
)
from payscore.stream.heap import freeze_after_full_collection, settle_heap
from payscore.stream.kafka import (
    check_broker,
    group_gap,
    group_settled,
    make_consumer,
    make_producer,
    prepare_output_topics,
    topic_exists,
)
from payscore.stream.rebuild import FeatureState
from payscore.stream.stats import ConsumerStats

log = logging.getLogger(__name__)
SESSION_TIMEOUT_MS = 10_000
# Nothing polled for this long while messages wait in owned partitions: re-join the group.
STALL_S = 30.0
# No partitions for this long although a group settles in seconds (a 10 s session, Kafka's
# 3 s initial rebalance delay): ask the broker whether the group explains it, else re-join.
# A consumer was seen idle for 90 s after a broker restart, never assigned.
UNASSIGNED_S = 45.0
# Objects frozen out of the collector (see _settle_heap) are given back to it this often, so
# that frozen garbage in reference cycles cannot pile up in a consumer that runs for days.
SETTLE_S = 3600.0
# How often a thread holding the GIL hands it over to a waiting one (CPython's default is 5 ms).
# The Kafka IO thread (a fetch response) and the writer thread (the writer process's reply)
# wake up needing the GIL while the main thread scores; at 1 ms they wait less, which trimmed
# the tail of the send-to-commit latency at 1,000/s (p99 72 vs 84 ms over three runs each).
GIL_SWITCH_S = 0.001
# Kafka's committed offsets are informational (the database holds the true ones), so they are
# sent at most this often, and once more on the way out. Each commit is a request that costs
# kafka-python about 2 ms of CPU; once per batch, at 1,000 payments/s, that was 60 a second.
KAFKA_COMMIT_S = 1.0


@dataclass(frozen=True)
class RunResult:
    decided: int
    duplicates: int
    dead_letters: int
    by_status: dict[str, int]
    rate: float
    #: Messages taken from Kafka whose batch was not finished (a stop while the database or
    #: the broker was unavailable): not committed, so the group reads them again.
    unfinished: int = 0


@dataclass(frozen=True)
class ConsumerApp:
    """What ``payscore consume`` runs: the consumer and what it holds (``close()`` after)."""

    consumer: StreamConsumer
    pipeline: Pipeline
    db: Engine
    artifact: ModelArtifact

    def close(self) -> None:
        self.pipeline.writer.close()
        self.pipeline.writer.lookup.dispose()
        self.db.dispose()


def build_consumer_app(
    settings: Settings,
    *,
    max_messages: int | None = None,
    idle_exit_s: float | None = None,
) -> ConsumerApp:
    """Load the model, check the database and broker, and wire a ``StreamConsumer``.

    The one factory behind ``payscore consume`` and ``payscore bench``.
    """
    from payscore.core.model import load_artifact
    from payscore.core.scoring import engine_for
    from payscore.store.engine import make_engine
    from payscore.store.process import ProcessWriter
    from payscore.store.writer import DecisionWriter
    from payscore.stream.dlq import next_attempt
    from payscore.stream.live import start_live_updates as live_updates

    artifact = load_artifact(settings.model_path, settings)
    scorer = build_scorer(settings, artifact)
    policy = scorer.policy
    # No pre-ping on the hot path: every use is retried, and a ping costs a round trip (and a
    # wait for the GIL) per batch.
    db = make_engine(settings, pre_ping=False)
    lookup = make_engine(settings, pre_ping=False, autocommit=True)
    writer: DecisionWriter | None = None
    try:
        writer = DecisionWriter(db, lookup)
        writer.ping()  # a clear error for a bad URL before a child process is started
        check_broker(settings)  # and for an unreachable broker
        dlq_max_bytes = prepare_output_topics(settings)
        if settings.writer_process:
            writer = ProcessWriter(settings, db, lookup)
        register_model(writer, artifact)
        pipeline = Pipeline(
            scorer,
            writer,
            settings.consumer_group,
            attempt_of=lambda record: next_attempt(getattr(record, "headers", None)),
            labels_topic=settings.labels_topic or None,
        )
        consumer = StreamConsumer(
            settings,
            pipeline,
            db,
            lambda: engine_for(artifact, policy),
            max_messages=max_messages,
            idle_exit_s=idle_exit_s,
        )
        consumer.dlq_max_bytes = dlq_max_bytes
        consumer.at_batch_boundary = live_updates(settings, db, scorer, writer).at_batch_boundary
    except BaseException:
        if writer is not None:
            writer.close()
        lookup.dispose()
        db.dispose()
        raise
    return ConsumerApp(consumer, pipeline, db, artifact)


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread while the main loop is blocked inside ``poll()``."""

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
        self._stopping = lambda: self._stop
        self.at_batch_boundary: Callable[[], None] = lambda: None  # see stream/live.py
        self._pending: set[TopicPartition] = set()  # assigned, not yet positioned/rebuilt
        self._consumer: Any = None
        self._producer: Any = None
        self._topics: list[str] = []
        self.stall_s = STALL_S
        self._stall_checked = 0.0
        self.unassigned_s = UNASSIGNED_S
        self.dlq_max_bytes = settings.dlq_max_message_bytes  # see prepare_output_topics
        self._unassigned_checked = 0.0
        self._writer: BatchWriterThread | None = None
        self._submitted = 0  # payments decided in batches handed to the writer
        self._unprepared = 0  # messages polled but never prepared (stopped meanwhile)
        self._settled_at = time.monotonic()
        self._to_commit: dict[TopicPartition, OffsetAndMetadata] = {}
        self._kafka_committed_at = 0.0
        self._state = FeatureState.for_consumer(self, db, new_engine)  # + snapshots

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, *_args: Any) -> None:
        """Finish the batches in hand, then exit (SIGINT/SIGTERM handler)."""
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
        # Room for the largest dead letter (kafka-python's default is 1 MiB).
        request_size = max(1_048_576, self.dlq_max_bytes + 65_536)
        self._producer = make_producer(self.settings, max_request_size=request_size)
        self._writer = BatchWriterThread(
            lambda batch: self.pipeline.write(batch),  # late: bench/probe.py times it
            self.pipeline.release,
            self._producer,
            self.settings.dlq_topic,
            self._stopping,
            new_producer=lambda: make_producer(self.settings, max_request_size=request_size),
            dlq_max_bytes=self.dlq_max_bytes,
            stats=self.stats,
            dlq_topic_exists=lambda: topic_exists(self.settings, self.settings.dlq_topic),
            create_dlq_topic=(
                (lambda: prepare_output_topics(self.settings))
                if self.settings.create_topics
                else None
            ),
        )
        topics = [self.topic]
        labels_topic = self.pipeline.labels_topic
        switch_interval = sys.getswitchinterval()
        try:
            # One metadata fetch before joining: the first assignment then covers every
            # partition of a topic created a moment ago. (Without it that assignment can be
            # empty, and kafka-python 3.0 was seen to hang in the rebalance that follows.)
            known = self._consumer.topics()
            if labels_topic and labels_topic in known:
                topics.append(labels_topic)
            else:
                self.pipeline.labels_topic = None
            self._topics = topics
            self._consumer.subscribe(topics=topics, listener=_Listener(self))
            gc.callbacks.append(freeze_after_full_collection)
            sys.setswitchinterval(GIL_SWITCH_S)
            self._loop()
            self._writer.close()  # the batches in hand are written (or given up if stopped)
            self._collect(final=True)
        finally:
            sys.setswitchinterval(switch_interval)
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(freeze_after_full_collection)
            self._stop = True
            self._writer.abandoned = True  # an error on the way out: write nothing more
            self._writer.close()
            try:
                self._consumer.close(autocommit=False)
                self._writer.producer.close(timeout=5)
            except Exception:  # closing is best effort on the way out
                log.debug("error closing a Kafka client", exc_info=True)
        if self._writer.error is not None:
            raise self._writer.error
        unfinished = self._writer.given_up + self._unprepared
        log.info("stopped: %s", self.stats.summary(None))
        if unfinished:
            log.warning(
                "stopped before finishing: %d messages were not committed and will be read again",
                unfinished,
            )
        s = self.stats
        return RunResult(
            s.decided, s.duplicates, s.dead_letters, dict(s.by_status), s.overall_rate(), unfinished
        )

    def _loop(self) -> None:
        assert self._writer is not None
        # idle_since: since when nothing arrived while --idle-exit may count it (partitions
        # owned, the group settled, nothing in hand); quiet_since: since when nothing arrived
        # although partitions are owned, for the stall check, which a rebalance that never
        # ends must reach.
        idle_since = unassigned_since = quiet_since = time.monotonic()
        while not self._stop and not self._writer.abandoned:
            self.stats.last_loop = time.monotonic()  # for /healthz
            polled = self._poll()
            self._collect()
            if self._pending:
                self._writer.drain()
                self._collect()
                retry(self._catch_up, "position partitions", self._stopping, self.stats.retries)
                idle_since = quiet_since = time.monotonic()  # a state rebuild is not idleness
                continue
            if self.stats.due(self.settings.log_interval_seconds):
                log.info("%s", self.stats.summary(self._lag()))
            if time.monotonic() - self._settled_at >= SETTLE_S:
                self._settle_heap()
            if not polled:
                # Idle time counts only while we own partitions and have nothing in hand:
                # waiting for an assignment is not idleness.
                now = time.monotonic()
                if not self._consumer.assignment():
                    idle_since = quiet_since = now
                    if self._unassigned_too_long(now - unassigned_since, now):
                        unassigned_since = time.monotonic()
                    continue
                unassigned_since = now
                if self._writer.busy():
                    idle_since = quiet_since = now
                elif self._stalled(now - quiet_since, now):
                    idle_since = quiet_since = time.monotonic()
                elif not group_settled(self._consumer):
                    # A rebalance under way (one follows every start, when kafka-python
                    # learns the topic's metadata): the messages may be a moment away. Under
                    # load it was seen to take longer than a 4 s --idle-exit.
                    idle_since = now
                elif self.idle_exit_s is not None and now - idle_since >= self.idle_exit_s:
                    log.info("no messages for %.0f s; exiting", self.idle_exit_s)
                    return
                continue
            idle_since = unassigned_since = quiet_since = time.monotonic()
            if not self._process(polled):
                return  # asked to stop while the database was down: nothing more is written
            if self.max_messages is not None and self._submitted >= self.max_messages:
                log.info("decided %d messages; exiting", self._submitted)
                return

    # -- one batch ------------------------------------------------------------------------

    def _poll(self) -> list[tuple[Any, float, datetime]]:
        """Whatever one poll returns (up to batch_size), at once: no waiting to fill a batch.

        Under load a poll returns a full batch; on a quiet stream ``max_wait_ms`` bounds the
        wait, so a payment waits for its batch only as long as the previous one takes.
        """
        try:
            polled = self._consumer.poll(
                timeout_ms=self.settings.max_wait_ms, max_records=self.settings.batch_size
            )
        except KafkaError as e:
            log.warning("Kafka poll failed (%s); retrying", e)
            time.sleep(1.0)
            return []
        mono, wall = time.monotonic(), utcnow()
        out: list[tuple[Any, float, datetime]] = []
        for tp, records in polled.items():
            if tp in self._pending:
                continue  # fetched before we positioned it: read again after the seek
            out.extend((r, mono, wall) for r in records)
        return out

    def _process(self, buffered: Sequence[tuple[Any, float, datetime]]) -> bool:
        assert self._writer is not None
        records = [r for r, _, _ in buffered]
        self.at_batch_boundary()  # stored rules and lists changed: applied before this batch
        self._state.maybe_refresh(self.pipeline.scorer.engine, records)
        started = time.monotonic()
        batch = retry(
            lambda: self.pipeline.prepare(records, buffered[0][2]),
            "read the database",
            self._stopping,
            self.stats.retries,
        )
        if batch is None:
            self._unprepared += len(records)
            return False
        self.stats.prepare_s.observe([time.monotonic() - started])
        item = InFlight(batch, [m for _, m, _ in buffered], records)
        if self.settings.publish_decisions and batch.decided:
            producer = self._writer.producer
            item.sent = send_decisions(producer, self.settings.decisions_topic, batch)
        self._submitted += len(batch.decided)
        return self._writer.submit(item)

    def _collect(self, final: bool = False) -> None:
        """Stats for the batches the writer thread has written, and their Kafka commit."""
        assert self._writer is not None
        for item in self._writer.completed():
            batch, result = item.batch, item.result
            assert result is not None
            self.stats.record_batch(
                result.decided,
                batch.status_counts(),
                result.duplicates,
                result.dead_letters,
                item.polled_at,
                item.committed_at,
                labels=len(batch.labels),
                dead_kinds=[r.kind for r in batch.rejected],
            )
            for (_, t, p), o in batch.offsets.items():
                self._to_commit[TopicPartition(t, p)] = OffsetAndMetadata(o, "", -1)
        now = time.monotonic()
        if self._to_commit and (final or now - self._kafka_committed_at >= KAFKA_COMMIT_S):
            self._commit_kafka(self._to_commit, final)
            self._to_commit, self._kafka_committed_at = {}, now

    def _commit_kafka(self, offsets: dict[TopicPartition, OffsetAndMetadata], sync: bool) -> None:
        """Informational: the database holds the true offsets, so failures are only logged."""
        owned = self._consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in owned}
        if not offsets:
            return
        try:
            if sync:
                self._consumer.commit(offsets=offsets)
            else:
                self._consumer.commit_async(offsets=offsets, callback=_commit_done)
        except Exception as e:
            log.info("Kafka offset commit skipped (%s); database offsets are authoritative", e)

    # -- rebalances and state -------------------------------------------------------------

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # The main loop is blocked in poll(), so every batch we scored is already with the
        # writer thread: let it finish, so the new owner reads offsets that include them
        # (a write that still came late would be fenced by the stored offsets, see writer.py).
        # Customer state is rebuilt at the next assignment.
        if self._writer is not None and not self._stop:
            self._writer.drain()
        self._pending -= revoked
        self.stats.ready = False

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Database reads do not belong on the IO loop: pause, and position them on the loop.
        self._pending |= assigned
        self.stats.ready = False
        self._consumer.pause(*assigned)

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
        started = time.monotonic()
        self.pipeline.scorer.engine = self._state.rebuild()
        self.stats.record_rebuild(time.monotonic() - started, self._state.rebuilt_rows)
        self._settle_heap()
        self._pending -= pending
        self._consumer.resume(*pending)
        self.stats.ready = bool(self._consumer.assignment())
        log.info("positioned %s", ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(pending)))
        return True

    def _settle_heap(self) -> None:
        settle_heap()
        self._settled_at = time.monotonic()

    def _stalled(self, quiet_s: float, now: float) -> bool:
        """Re-join the group if nothing arrived for ``stall_s`` although messages wait.

        A last resort: kafka-python 3.0 was seen to stay in a rebalance that never completed,
        owning partitions it no longer fetched. Lag is asked of the broker at most once per
        ``stall_s``, so an idle stream costs nothing. Returns True if it re-joined.
        """
        if quiet_s < self.stall_s or now - self._stall_checked < self.stall_s:
            return False
        self._stall_checked = now
        lag = self._lag()
        if not lag:
            return False
        log.warning(
            "no message for %.0f s although %d are waiting; leaving and re-joining the group",
            quiet_s,
            lag,
        )
        self._rejoin()
        return True

    def _unassigned_too_long(self, unassigned_s: float, now: float) -> bool:
        """Re-join the group if this consumer has had no partition for ``unassigned_s`` and
        the group does not explain why (see ``_why_unassigned``). Checked at most once per
        ``unassigned_s``; returns True if it re-joined."""
        if unassigned_s < self.unassigned_s or now - self._unassigned_checked < self.unassigned_s:
            return False
        self._unassigned_checked = now
        why = self._why_unassigned()
        if why is None:
            log.debug("no partitions for %.0f s: other members own them all", unassigned_s)
            return False
        log.warning(
            "no partitions assigned for %.0f s (%s); leaving and re-joining the group",
            unassigned_s,
            why,
        )
        self._rejoin()
        return True

    def _why_unassigned(self) -> str | None:
        """None when being left without partitions is right (see ``kafka.group_gap``)."""
        partitions = set(self._consumer.partitions_for_topic(self.topic) or ())
        return group_gap(self.settings, self.group, self.topic, partitions)

    def _rejoin(self) -> None:
        """Leave the group and subscribe again; the next assignment re-seeks and rebuilds."""
        assert self._writer is not None
        self._writer.drain()
        self._collect()
        self._pending.clear()  # the next assignment seeks to the database offsets again
        self.stats.ready = False
        self._consumer.unsubscribe()
        self._consumer.subscribe(topics=self._topics, listener=_Listener(self))

    def _owned_partitions(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic}

    def _lag(self) -> int | None:
        try:
            assigned = list(self._consumer.assignment())
            if not assigned:
                self.stats.lag = {}
                return 0
            ends = self._consumer.end_offsets(assigned)
            lag = {
                (tp.topic, tp.partition): max(ends[tp] - self._consumer.position(tp), 0)
                for tp in assigned
            }
            self.stats.lag = lag  # the per-partition gauge, as fresh as the summary line
            return sum(lag.values())
        except Exception:  # lag is informational only
            return None


def _commit_done(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.info("Kafka offset commit failed (%s); database offsets are authoritative", response)
