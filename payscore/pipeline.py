"""The batch pipeline shared by ``payscore consume`` and ``payscore demo``.

Raw messages in, a prepared batch out (validate -> drop duplicates -> Scorer), then one
database transaction (DecisionWriter). Kafka stays outside: a message is anything with
``topic``, ``partition``, ``offset``, ``key``, ``value`` (kafka-python records qualify), so the
demo feeds the very same code from the simulator.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from payscore.core.decision import APPROVED, Decision
from payscore.core.features import Label
from payscore.core.schema import InvalidMessage, Payment, parse_payment
from payscore.core.scoring import Scorer
from payscore.store.schema import scored_transactions
from payscore.store.writer import (
    DeadLetterRecord,
    DecisionWriter,
    DuplicateRecord,
    WriteResult,
    utcnow,
)

log = logging.getLogger(__name__)

SCORING_ERROR = "scoring_error"
# Optional payment fields are bounded tighter by the table than by the message schema.
_COLUMN_LIMITS = {
    name: scored_transactions.c[name].type.length  # type: ignore[attr-defined]
    for name in ("channel", "merchant_category", "country")
}


class Message(Protocol):
    """The parts of a consumed record the pipeline reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class RawMessage:
    """A message not from Kafka (the demo, tests); same attribute names as a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A message that goes to the dead-letter topic, with why."""

    message: Any  # the original record, for the dead-letter envelope
    kind: str
    field: str | None
    reason: str
    record: DeadLetterRecord


@dataclass
class PreparedBatch:
    """A scored batch, ready to be written in one transaction (and retried as is)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    decided: list[tuple[Payment, Decision]] = field(default_factory=list)
    duplicates: list[DuplicateRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, d in self.decided:
            counts[d.status] = counts.get(d.status, 0) + 1
        return counts


class Pipeline:
    """Validate, de-duplicate, score and write batches; one Scorer, one writer, one group."""

    def __init__(
        self,
        scorer: Scorer,
        writer: DecisionWriter,
        group: str,
        attempt_of: Callable[[Any], int] | None = None,
        labels_topic: str | None = None,
    ) -> None:
        self.scorer = scorer
        self.labels_topic = labels_topic
        self.writer = writer
        self.group = group
        self._attempt_of = attempt_of or (lambda _message: 1)

    def prepare(
        self, messages: Sequence[Any], received_at: Sequence[datetime] | datetime | None = None
    ) -> PreparedBatch:
        """Everything but the write. Reads the database once (known ids), before any state
        changes, so a ``ServiceUnavailable`` here can simply be retried."""
        now = utcnow()
        if received_at is None or isinstance(received_at, datetime):
            received = [received_at or now] * len(messages)
        else:
            received = list(received_at)
        batch = PreparedBatch(size=len(messages))
        for m in messages:
            key = (self.group, m.topic, m.partition)
            batch.offsets[key] = max(batch.offsets.get(key, 0), m.offset + 1)

        parsed: list[tuple[Any, Payment, datetime]] = []
        for m, at in zip(messages, received, strict=True):
            if self.labels_topic is not None and m.topic == self.labels_topic:
                self._take_label(m, batch)
                continue
            result = parse_payment(m.value if m.value is not None else b"")
            if isinstance(result, InvalidMessage):
                batch.rejected.append(self._reject(m, result.kind, result.field, result.message))
                continue
            too_long = _too_long_field(result)
            if too_long is not None:
                reason = f"{too_long}: longer than {_COLUMN_LIMITS[too_long]} characters"
                batch.rejected.append(self._reject(m, "schema", too_long, reason))
                continue
            parsed.append((m, result, at))

        known = self.writer.existing_ids(p.transaction_id for _, p, _ in parsed)
        valid: list[tuple[Any, Payment, datetime]] = []
        for m, p, at in parsed:
            if p.transaction_id in known:
                batch.duplicates.append(
                    DuplicateRecord(p.transaction_id, m.topic, m.partition, m.offset, now)
                )
            else:
                known.add(p.transaction_id)
                valid.append((m, p, at))

        for (m, p, at), decision in zip(valid, self._score(valid, batch), strict=True):
            if decision is None:
                continue
            batch.decided.append((p, decision))
            batch.rows.append(decision_row(p, decision, m, at, utcnow()))
        return batch

    def write(self, batch: PreparedBatch) -> WriteResult:
        """One transaction for the whole batch (decisions, duplicates, dead letters, offsets)."""
        return self.writer.write_batch(
            batch.rows,
            batch.duplicates,
            [r.record for r in batch.rejected],
            batch.offsets,
            labels=batch.labels,
        )

    def process(self, messages: Sequence[Any]) -> tuple[PreparedBatch, WriteResult]:
        """prepare + write, for callers with no dead-letter topic to feed (the demo)."""
        batch = self.prepare(messages)
        return batch, self.write(batch)

    # -- internals ------------------------------------------------------------------------

    def _score(
        self, valid: list[tuple[Any, Payment, datetime]], batch: PreparedBatch
    ) -> list[Decision | None]:
        """Score the batch at once; if that fails, one by one so only the poison one is lost."""
        payments = [p for _, p, _ in valid]
        if not payments:
            return []
        try:
            return list(self.scorer.score_batch(payments))
        except Exception as e:  # a scoring bug must cost one message, not the stream
            log.warning("scoring a batch of %d failed (%s); scoring one by one", len(payments), e)
        out: list[Decision | None] = []
        for m, p, _ in valid:
            try:
                out.append(self.scorer.score_batch([p])[0])
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"
                log.warning("dead-lettering %s/%s@%s: %s", m.topic, m.partition, m.offset, reason)
                batch.rejected.append(self._reject(m, SCORING_ERROR, None, reason))
                out.append(None)
        return out

    def _take_label(self, m: Any, batch: PreparedBatch) -> None:
        """A fraud label from the labels topic: feeds the engine now, fraud_labels on write."""
        label = parse_label(m.value)
        if isinstance(label, str):
            batch.rejected.append(self._reject(m, "schema", None, label))
            return
        self.scorer.engine.add_labels([label])
        batch.labels.append(
            {
                "transaction_id": label.transaction_id,
                "is_fraud": label.is_fraud,
                "known_at": label.known_at.replace(tzinfo=None),
                "source": "stream",
            }
        )

    def _reject(self, m: Any, kind: str, field_name: str | None, reason: str) -> Rejected:
        record = DeadLetterRecord(
            source_topic=m.topic,
            source_partition=m.partition,
            source_offset=m.offset,
            error_kind=kind,
            error_message=reason,
            attempt=self._attempt_of(m),
            created_at=utcnow(),
        )
        return Rejected(m, kind, field_name, reason, record)


def parse_label(raw: bytes | None) -> Label | str:
    """A labels-topic message ({"transaction_id", "is_fraud", "known_at"}) or why not."""
    if raw is None or len(raw) > 4096:
        return "label message is empty or too large"
    try:
        body = json.loads(raw)
        tx, fraud, known = body["transaction_id"], body["is_fraud"], body["known_at"]
        if not isinstance(tx, str) or not 0 < len(tx) <= 64 or not isinstance(fraud, bool):
            return "label needs a transaction_id string and an is_fraud boolean"
        at = datetime.fromisoformat(known)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        return f"unreadable label: {type(e).__name__}"
    if at.tzinfo is None:
        return "label known_at needs a UTC offset"
    return Label(tx, fraud, at.astimezone(timezone.utc))


def _too_long_field(p: Payment) -> str | None:
    for name, limit in _COLUMN_LIMITS.items():
        value = getattr(p, name)
        if value is not None and limit is not None and len(value) > limit:
            return name
    return None


def decision_row(
    p: Payment, d: Decision, m: Any, received_at: datetime, scored_at: datetime
) -> dict[str, Any]:
    """The ``scored_transactions`` row of one decision (times as naive UTC)."""
    return {
        "transaction_id": p.transaction_id,
        "customer_id": p.customer_id,
        "terminal_id": p.terminal_id,
        "amount": p.amount,
        "currency": p.currency,
        "event_time": p.event_time.replace(tzinfo=None),
        "received_at": received_at,
        "scored_at": scored_at,
        "score": d.score,
        "prediction": 0 if d.status == APPROVED else 1,
        "status": d.status,
        "reason_codes": ",".join(d.reasons)[:255],
        "model_version": d.model_version,
        "channel": p.channel,
        "merchant_category": p.merchant_category,
        "country": p.country,
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
    }
