"""The dead-letter format: original bytes untouched, the reason in Kafka headers.

A dead letter's key and value are exactly the key and value of the message that failed, so it
can be replayed byte for byte. Everything payscore knows about the failure travels in
``payscore.*`` headers (see docs/dead-letters.md). Replays carry ``payscore.replay.attempt``;
a consumer that dead-letters a replayed message again sets ``attempt = that + 1``.

The one exception to "bytes untouched": a dead letter must fit where its source message
fitted, or publishing it fails for ever and its partition stops. A message too large for the
dead-letter budget keeps a bounded prefix of its value, and headers give the original length,
its SHA-256 and (as always) its source coordinates, to fetch the original while Kafka keeps it.
"""

from __future__ import annotations

import hashlib
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
H_TRUNCATED = "payscore.original.truncated"
H_ORIGINAL_BYTES = "payscore.original.bytes"
H_ORIGINAL_SHA256 = "payscore.original.sha256"
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

#: Default ceiling of one dead letter: under Kafka's default ``message.max.bytes``
#: (1,048,588) and kafka-python's default ``max_request_size`` (1,048,576).
DEFAULT_MAX_DEAD_LETTER_BYTES = 1_000_000
#: Allowance for the record and batch framing around key, value and headers.
_FRAMING_BYTES = 512
#: A truncated dead letter keeps at most this much of an oversized key.
_MAX_KEPT_KEY_BYTES = 1024

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
    #: Set when the value is only a prefix of the original (see the module docstring).
    original_bytes: int | None = None
    original_sha256: str | None = None
    dlq_topic: str | None = None
    dlq_partition: int | None = None
    dlq_offset: int | None = None

    @property
    def truncated(self) -> bool:
        """True when the value is a prefix: the original must be fetched from its source."""
        return self.original_bytes is not None

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
    max_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES,
) -> tuple[bytes | None, bytes | None, Headers]:
    """Build the (key, value, headers) of a dead letter; key and value are kept as given,
    unless together they exceed ``max_bytes``: then see ``_truncated``."""
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
    if _record_bytes(key, value, headers) > max_bytes:
        return _truncated(key, value, headers, max_bytes)
    return key, value, headers


def _record_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    size = len(key or b"") + len(value or b"") + _FRAMING_BYTES
    return size + sum(len(name) + len(raw) + 8 for name, raw in headers)


def _truncated(
    key: bytes | None, value: bytes | None, headers: Headers, max_bytes: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """A dead letter that fits ``max_bytes``: a prefix of the value (and, if need be, of the
    key), with the original value's length and SHA-256 and the reason extended to say so."""
    original = value or b""
    where = "/".join(
        _header(headers, name).decode()  # type: ignore[union-attr]
        for name in (H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET)
    )
    digest = hashlib.sha256(original).hexdigest()
    kept_key = key if key is None or len(key) <= _MAX_KEPT_KEY_BYTES else key[:_MAX_KEPT_KEY_BYTES]
    out = [(n, v) for n, v in headers if n != H_MESSAGE]
    reason = (_header(headers, H_MESSAGE) or b"").decode()
    out += [
        (H_TRUNCATED, b"true"),
        (H_ORIGINAL_BYTES, str(len(original)).encode()),
        (H_ORIGINAL_SHA256, digest.encode()),
    ]
    budget = max_bytes - _record_bytes(kept_key, b"", out) - MAX_ERROR_MESSAGE_CHARS * 4
    if budget < 0:
        raise ValueError(f"max_bytes {max_bytes} leaves no room for a dead letter's headers")
    note = (
        f"; value truncated to its first {min(budget, len(original))} of {len(original)} bytes "
        f"(sha256 {digest[:16]}...); the original is at {where} while Kafka retains it"
    )
    keep_reason = max(0, MAX_ERROR_MESSAGE_CHARS - len(note))
    out.insert(1, (H_MESSAGE, (_bounded(reason, keep_reason) + note).encode()))
    return kept_key, original[:budget], out


def dead_letter_for_record(
    record: Any,
    *,
    kind: str,
    message: str,
    field: str | None = None,
    at: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES,
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
        max_bytes=max_bytes,
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
    truncated = _header(headers, H_TRUNCATED) == b"true"
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
        original_bytes=_int(headers, H_ORIGINAL_BYTES, where) if truncated else None,
        original_sha256=_text(headers, H_ORIGINAL_SHA256, where) if truncated else None,
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
