"""The dead-letter format: original bytes untouched, the reason in Kafka headers.

A dead letter's key and value are exactly the key and value of the message that failed, so it
can be replayed byte for byte. Everything payscore knows about the failure travels in
``payscore.*`` headers (see docs/dead-letters.md). Replays carry ``payscore.replay.attempt``;
a consumer that dead-letters a replayed message again sets ``attempt = that + 1``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kafka.errors import KafkaError

from payscore.core.schema import KINDS as MESSAGE_KINDS
from payscore.errors import InputError, ServiceUnavailable

log = logging.getLogger(__name__)

H_KIND = "payscore.error.kind"
H_MESSAGE = "payscore.error.message"
H_FIELD = "payscore.error.field"
H_SOURCE_TOPIC = "payscore.source.topic"
H_SOURCE_PARTITION = "payscore.source.partition"
H_SOURCE_OFFSET = "payscore.source.offset"
H_DEAD_LETTERED_AT = "payscore.dead_lettered_at"
H_ATTEMPT = "payscore.attempt"
#: Set by ``payscore replay-dlq`` on a re-published message: the attempt it came from.
H_REPLAY_ATTEMPT = "payscore.replay.attempt"

SCORING_ERROR = "scoring_error"
#: Every error kind a dead letter may carry: parse_payment's kinds plus scoring failures.
KINDS: tuple[str, ...] = (*MESSAGE_KINDS, SCORING_ERROR)
#: State of a dead letter that reached ``max_dlq_attempts``: never replayed automatically.
PARKED = "parked"

#: Longest error message kept (the dead_letters table column holds 1024 characters).
MAX_ERROR_MESSAGE_CHARS = 1024
MAX_KIND_CHARS = 32

Headers = list[tuple[str, bytes]]


class MalformedDeadLetter(InputError):
    """A record on the dead-letter topic lacks the payscore headers or has bad values."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as read back from the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    kind: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_at: datetime  # tz-aware UTC
    attempt: int  # 1 for the first failure, +1 per failed replay
    field: str | None = None
    dlq_topic: str | None = None
    dlq_partition: int | None = None
    dlq_offset: int | None = None

    def is_parked(self, max_attempts: int) -> bool:
        """True once the message has failed ``max_attempts`` times: replay stops here."""
        return self.attempt >= max_attempts


def _bounded(text: str, limit: int) -> str:
    # Printable only: the message may quote bits of hostile input and ends up in terminals.
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("dead_lettered_at must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def next_attempt(headers: Sequence[tuple[str, bytes]] | None) -> int:
    """The attempt number for a new dead letter of a record with these headers.

    1 for a message never replayed; ``payscore.replay.attempt + 1`` for a replayed one.
    An unreadable replay header counts as a first attempt rather than failing the consumer.
    """
    raw = _header(headers, H_REPLAY_ATTEMPT)
    if raw is None:
        return 1
    try:
        previous = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        log.warning("ignoring unreadable %s header", H_REPLAY_ATTEMPT)
        return 1
    return max(previous, 0) + 1


def dead_letter(
    key: bytes | None,
    value: bytes | None,
    *,
    kind: str,
    message: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    attempt: int = 1,
    field: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes | None, bytes | None, Headers]:
    """Build the (key, value, headers) of a dead letter; key and value are kept as given."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    moment = at or datetime.now(timezone.utc)
    headers: Headers = [
        (H_KIND, _bounded(kind, MAX_KIND_CHARS).encode()),
        (H_MESSAGE, _bounded(message, MAX_ERROR_MESSAGE_CHARS).encode()),
        (H_SOURCE_TOPIC, source_topic.encode()),
        (H_SOURCE_PARTITION, str(int(source_partition)).encode()),
        (H_SOURCE_OFFSET, str(int(source_offset)).encode()),
        (H_DEAD_LETTERED_AT, _utc_iso(moment).encode()),
        (H_ATTEMPT, str(int(attempt)).encode()),
    ]
    if field is not None:
        headers.append((H_FIELD, _bounded(field, 64).encode()))
    return key, value, headers


def dead_letter_for_record(
    record: Any,
    *,
    kind: str,
    message: str,
    field: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes | None, bytes | None, Headers]:
    """Dead letter for a consumed kafka-python record; the attempt comes from its headers."""
    return dead_letter(
        record.key,
        record.value,
        kind=kind,
        message=message,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        attempt=next_attempt(getattr(record, "headers", None)),
        field=field,
        at=at,
    )


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    # Last one wins, as with Kafka's own header lookup.
    found = None
    for header_name, header_value in headers or ():
        if header_name == name:
            found = header_value
    return found


def _text(headers: Sequence[tuple[str, bytes]] | None, name: str, where: str) -> str:
    raw = _header(headers, name)
    if raw is None:
        raise MalformedDeadLetter(f"dead letter at {where} has no {name} header")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedDeadLetter(f"dead letter at {where}: {name} is not UTF-8") from e


def _int(headers: Sequence[tuple[str, bytes]] | None, name: str, where: str) -> int:
    text = _text(headers, name, where)
    try:
        return int(text)
    except ValueError as e:
        raise MalformedDeadLetter(f"dead letter at {where}: {name}={text[:40]!r}") from e


def parse_dead_letter(record: Any) -> DeadLetter:
    """Read a dead letter back from a consumed record; ``MalformedDeadLetter`` if not one."""
    where = f"{record.topic}/{record.partition}@{record.offset}"
    headers = getattr(record, "headers", None) or []
    stamp = _text(headers, H_DEAD_LETTERED_AT, where)
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError as e:
        raise MalformedDeadLetter(f"dead letter at {where}: bad time {stamp[:40]!r}") from e
    if at.tzinfo is None:
        raise MalformedDeadLetter(f"dead letter at {where}: time has no UTC offset")
    field_raw = _header(headers, H_FIELD)
    return DeadLetter(
        key=record.key,
        value=record.value,
        kind=_text(headers, H_KIND, where),
        message=_text(headers, H_MESSAGE, where),
        source_topic=_text(headers, H_SOURCE_TOPIC, where),
        source_partition=_int(headers, H_SOURCE_PARTITION, where),
        source_offset=_int(headers, H_SOURCE_OFFSET, where),
        dead_lettered_at=at.astimezone(timezone.utc),
        attempt=_int(headers, H_ATTEMPT, where),
        field=field_raw.decode("utf-8", "replace") if field_raw is not None else None,
        dlq_topic=record.topic,
        dlq_partition=record.partition,
        dlq_offset=record.offset,
    )


def send_dead_letters(
    producer: Any,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None, Headers]],
    timeout_s: float = 30.0,
) -> int:
    """Send dead letters, flush, and confirm every one; ``ServiceUnavailable`` if any failed.

    The caller commits its input offsets only after this returns, so a failure here means the
    bad messages are read (and dead-lettered) again, never lost.
    """
    futures = []
    try:
        for key, value, headers in items:
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot write dead letters to topic {topic!r}: {str(e)[:300] or type(e).__name__}"
        ) from e
    return len(futures)
