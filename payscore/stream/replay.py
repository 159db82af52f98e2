"""``payscore replay-dlq`` as a library: re-publish dead letters to their source topic once.

The dead-letter topic is read up to its end as of the start of the run. What was handled
(replayed, parked, or unreadable) is remembered in ``consumer_offsets`` - one watermark per
error kind and DLQ partition, group ``payscore-replay-dlq:<kind>`` - written only after the
replays are flushed, so a second run does not replay again and ``--kind`` runs do not hide
the other kinds. See docs/dead-letters.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.stream.dlq import (
    H_ORIGINAL_BYTES,
    H_ORIGINAL_SHA256,
    H_REPLAY_ATTEMPT,
    H_TRUNCATED,
    KINDS,
    DeadLetter,
    MalformedDeadLetter,
    dead_letter,
    parse_dead_letter,
)
from payscore.stream.kafka import describe_servers, ensure_topics, make_consumer, make_producer

if TYPE_CHECKING:
    from payscore.core.paymentfile import Progress

log = logging.getLogger(__name__)

GROUP_PREFIX = "payscore-replay-dlq"
OTHER = "other"  # unknown kinds and unreadable records share one watermark
ALL_KINDS = (*KINDS, OTHER)
H_REPLAY_OF = "payscore.replay.of"
PARKED_SUFFIX = ".parked"
_STALL_S = 30.0  # no record for this long while the end is not reached: give up

REPLAY, PARKED, SKIPPED, MALFORMED = "replay", "parked", "skipped", "malformed"
READING, SENDING = "reading dead letters", "re-publishing"  # the stages given to ``progress``


@dataclass(frozen=True)
class ReplayFilter:
    kinds: frozenset[str] | None = None  # None = every kind
    since: datetime | None = None  # by dead-letter time, inclusive
    until: datetime | None = None  # exclusive
    limit: int | None = None  # at most this many replays


@dataclass(frozen=True)
class ReplayItem:
    action: str  # replay | parked | skipped | malformed
    dlq_partition: int
    dlq_offset: int
    dead_letter: DeadLetter | None
    note: str = ""


@dataclass
class ReplayResult:
    items: list[ReplayItem] = field(default_factory=list)
    dry_run: bool = False
    dlq_topic: str = ""
    published: int = 0  # replays and parked copies the broker acknowledged

    def count(self, action: str) -> int:
        return sum(1 for item in self.items if item.action == action)

    @property
    def replayed(self) -> int:
        return self.count(REPLAY)

    @property
    def parked(self) -> int:
        return self.count(PARKED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def malformed(self) -> int:
        return self.count(MALFORMED)


def group_for(kind: str) -> str:
    """The consumer_offsets group that remembers replay progress for one error kind."""
    return f"{GROUP_PREFIX}:{kind if kind in KINDS else OTHER}"


def parked_topic(settings: Settings) -> str:
    return settings.dlq_topic + PARKED_SUFFIX


def replay_targets(settings: Settings) -> frozenset[str]:
    """The only topics a dead letter is replayed to: the configured input and labels topics.

    A dead letter names its own source topic in a header, and anyone who can write the
    dead-letter topic can write that header: replaying to whatever it names would let them
    inject messages into any topic. Anything else is parked, with the reason.
    """
    return frozenset(t for t in (settings.input_topic, settings.labels_topic) if t)


def replay_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    """Headers of a re-published message: its attempt count and where it came from."""
    origin = f"{dead.dlq_topic}/{dead.dlq_partition}/{dead.dlq_offset}"
    return [(H_REPLAY_ATTEMPT, str(dead.attempt).encode()), (H_REPLAY_OF, origin.encode())]


def replay_dead_letters(
    settings: Settings,
    filters: ReplayFilter | None = None,
    *,
    dry_run: bool = False,
    writer: Any = None,
    on_item: Callable[[ReplayItem], None] | None = None,
    progress: Progress | None = None,
    result: ReplayResult | None = None,
) -> ReplayResult:
    """Replay the dead letters not yet handled; returns what was done (or would be).

    ``progress(stage, done, total)`` hears of the records read (stage ``READING``) and the
    messages re-published (``SENDING``). A ``result`` given is filled as the run goes (the
    metrics endpoint reads it).
    """
    filters = filters or ReplayFilter()
    progress = progress or _no_progress
    topic = settings.dlq_topic
    result = result if result is not None else ReplayResult()
    result.dry_run, result.dlq_topic = dry_run, topic
    if writer is None:
        from payscore.store.engine import make_engine
        from payscore.store.writer import DecisionWriter

        writer = DecisionWriter(make_engine(settings))
    kinds = sorted(filters.kinds) if filters.kinds is not None else list(ALL_KINDS)
    groups = {group_for(k) for k in kinds}

    consumer = make_consumer(settings, None, client_id="payscore-replay-dlq")
    try:
        marks = {g: writer.read_offsets(g, topic) for g in {group_for(k) for k in ALL_KINDS}}
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            log.info("dead-letter topic %s does not exist: nothing to replay", topic)
            return result
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = {tp: min(marks[g].get(tp.partition, 0) for g in groups) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        decide = _Decider(
            marks, groups, filters, settings.max_dlq_attempts, replay_targets(settings)
        )
        handled, to_send = _scan(
            consumer, ends, starts, decide, filters.limit, result, on_item, progress
        )
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot read dead letters from Kafka at {describe_servers(settings)}: {e}"
        ) from e
    finally:
        consumer.close()

    if dry_run:
        return result
    if to_send:
        result.published = _publish(settings, to_send, progress)
    offsets = {
        (g, topic, p): position
        for g in groups
        for p, position in handled.items()
        if position > marks[g].get(p, 0)
    }
    if offsets:
        writer.write_batch([], offsets=offsets)  # after the flush: write, then remember
    return result


def _scan(
    consumer: Any,
    ends: dict[Any, int],
    starts: dict[Any, int],
    decide: _Decider,
    limit: int | None,
    result: ReplayResult,
    on_item: Callable[[ReplayItem], None] | None,
    report: Progress,
) -> tuple[dict[int, int], list[tuple[str, DeadLetter]]]:
    """Read each partition from its start to its end snapshot, deciding every record."""
    progress = {tp.partition: starts[tp] for tp in ends}
    total = sum(max(0, end - starts[tp]) for tp, end in ends.items())
    read = 0
    report(READING, read, total)
    stopped = {tp for tp, end in ends.items() if starts[tp] >= end}
    to_send: list[tuple[str, DeadLetter]] = []
    last_record = time.monotonic()
    while len(stopped) < len(ends):
        batch = consumer.poll(timeout_ms=500)
        if not batch:
            if time.monotonic() - last_record > _STALL_S:
                raise ServiceUnavailable("reading the dead-letter topic stalled")
            continue
        last_record = time.monotonic()
        for tp, records in batch.items():
            for record in records:
                if tp in stopped or record.offset >= ends[tp]:
                    stopped.add(tp)
                    break
                read += 1
                if limit is not None and result.replayed >= limit:
                    stopped.update(ends)
                    break
                item = decide(record)
                if item is None:  # already handled for its kind by an earlier run
                    progress[tp.partition] = record.offset + 1
                    continue
                if item.action == SKIPPED and item.note == "after --until":
                    stopped.add(tp)  # later dead letters are later still
                    break
                progress[tp.partition] = record.offset + 1
                result.items.append(item)
                if on_item is not None:
                    on_item(item)
                if item.action in (REPLAY, PARKED) and item.dead_letter is not None:
                    to_send.append((item.action, item.dead_letter))
            if tp not in stopped and consumer.position(tp) >= ends[tp]:
                stopped.add(tp)
        report(READING, read, total)
    return progress, to_send


class _Decider:
    """What to do with one dead-letter record, given the watermarks and the filters."""

    def __init__(
        self,
        marks: dict[str, dict[int, int]],
        selected: set[str],
        filters: ReplayFilter,
        max_attempts: int,
        targets: frozenset[str],
    ) -> None:
        self.marks, self.selected = marks, selected
        self.filters, self.max_attempts = filters, max_attempts
        self.targets = targets

    def _seen(self, group: str, record: Any) -> bool:
        return bool(record.offset < self.marks.get(group, {}).get(record.partition, 0))

    def __call__(self, record: Any) -> ReplayItem | None:
        """None when an earlier run already handled the record."""
        where = (record.partition, record.offset)
        try:
            dead = parse_dead_letter(record)
        except MalformedDeadLetter as e:
            if group_for(OTHER) not in self.selected or self._seen(group_for(OTHER), record):
                return None
            return ReplayItem(MALFORMED, *where, None, str(e))
        group = group_for(dead.kind)
        if self._seen(group, record):
            return None
        if group not in self.selected:
            return ReplayItem(SKIPPED, *where, dead, "kind not selected")
        f = self.filters
        if f.until is not None and dead.dead_lettered_at >= f.until:
            return ReplayItem(SKIPPED, *where, dead, "after --until")
        if f.since is not None and dead.dead_lettered_at < f.since:
            return ReplayItem(SKIPPED, *where, dead, "before --since")
        if dead.is_parked(self.max_attempts):
            return ReplayItem(PARKED, *where, dead, f"attempt {dead.attempt}")
        if dead.truncated:
            origin = f"{dead.source_topic}/{dead.source_partition}/{dead.source_offset}"
            return ReplayItem(PARKED, *where, dead, f"truncated; the original is at {origin}")
        if dead.source_topic not in self.targets:
            return ReplayItem(
                PARKED, *where, dead, f"source topic {dead.source_topic!r} is not a replay target"
            )
        return ReplayItem(REPLAY, *where, dead, f"attempt {dead.attempt}")


def _publish(settings: Settings, items: list[tuple[str, DeadLetter]], report: Progress) -> int:
    """Send replays to their source topics and parked letters to ``<dlq>.parked``; flush.
    Returns how many were acknowledged (all of them, or it raises)."""
    targets = {d.source_topic for action, d in items if action == REPLAY}
    if any(action == PARKED for action, _ in items):
        targets.add(parked_topic(settings))
    ensure_topics(settings, sorted(targets))
    producer = make_producer(settings, client_id="payscore-replay-dlq")
    futures = []
    try:
        for action, dead in items:
            if action == REPLAY:
                futures.append(
                    producer.send(
                        dead.source_topic,
                        key=dead.key,
                        value=dead.value,
                        headers=replay_headers(dead),
                    )
                )
            else:
                futures.append(
                    producer.send(
                        parked_topic(settings),
                        key=dead.key,
                        value=dead.value,
                        headers=_parked_headers(dead),
                    )
                )
            if len(futures) % 100 == 0:
                report(SENDING, len(futures), len(items))
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        report(SENDING, len(futures), len(items))
        return len(futures)
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot re-publish dead letters to Kafka at {describe_servers(settings)}: {e}"
        ) from e
    finally:
        producer.close(timeout=5)


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


def _parked_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    _, _, headers = dead_letter(
        dead.key,
        dead.value,
        kind=dead.kind,
        message=dead.message,
        source_topic=dead.source_topic,
        source_partition=dead.source_partition,
        source_offset=dead.source_offset,
        attempt=dead.attempt,
        field=dead.field,
        at=dead.dead_lettered_at,
    )
    if dead.truncated:  # the value is a prefix: keep saying so, and what the original was
        headers += [
            (H_TRUNCATED, b"true"),
            (H_ORIGINAL_BYTES, str(dead.original_bytes).encode()),
            (H_ORIGINAL_SHA256, str(dead.original_sha256).encode()),
        ]
    return headers
