"""Dead-letter format: original bytes survive, metadata round-trips through headers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from payscore.core.schema import KINDS as MESSAGE_KINDS
from payscore.stream import dlq


def _record(key, value, headers, topic="payments.dlq", partition=2, offset=41):
    return SimpleNamespace(
        key=key, value=value, headers=headers, topic=topic, partition=partition, offset=offset
    )


@pytest.mark.parametrize(
    "value",
    [b'{"amount": "-1"}', b"\xff\xfe not utf-8 \x00\x01", b"", None],
    ids=["json", "non-utf8", "empty", "tombstone"],
)
def test_round_trip_keeps_bytes_and_metadata(value):
    at = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    key, out_value, headers = dlq.dead_letter(
        b"cust-\xff",
        value,
        kind="encoding",
        message="not valid UTF-8 at byte 0",
        source_topic="payments",
        source_partition=3,
        source_offset=1234,
        attempt=2,
        field="amount",
        at=at,
    )
    assert key == b"cust-\xff" and out_value == value
    dead = dlq.parse_dead_letter(_record(key, out_value, headers))
    assert dead.value == value and dead.key == b"cust-\xff"
    assert (dead.kind, dead.message, dead.field) == (
        "encoding",
        "not valid UTF-8 at byte 0",
        "amount",
    )
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == ("payments", 3, 1234)
    assert dead.attempt == 2
    assert dead.dead_lettered_at == at and dead.dead_lettered_at.utcoffset() == timedelta(0)
    assert (dead.dlq_topic, dead.dlq_partition, dead.dlq_offset) == ("payments.dlq", 2, 41)


def test_headers_are_bytes_with_documented_names():
    _, _, headers = dlq.dead_letter(
        b"k",
        b"v",
        kind="schema",
        message="m",
        source_topic="t",
        source_partition=0,
        source_offset=0,
    )
    names = [name for name, _ in headers]
    assert names == [
        "payscore.error.kind",
        "payscore.error.message",
        "payscore.source.topic",
        "payscore.source.partition",
        "payscore.source.offset",
        "payscore.dead_lettered_at",
        "payscore.attempt",
    ]
    assert all(isinstance(v, bytes) for _, v in headers)
    assert dict(headers)["payscore.attempt"] == b"1"


def test_error_message_is_bounded_and_printable():
    _, _, headers = dlq.dead_letter(
        None,
        b"x",
        kind="schema",
        message="bad\x1b[31m\n" * 1000,
        source_topic="t",
        source_partition=0,
        source_offset=0,
    )
    text = dict(headers)[dlq.H_MESSAGE].decode()
    assert len(text) == dlq.MAX_ERROR_MESSAGE_CHARS
    assert text.isprintable() and text.endswith("...")


def test_kinds_cover_parser_kinds_and_scoring():
    assert set(MESSAGE_KINDS) < set(dlq.KINDS)
    assert dlq.SCORING_ERROR in dlq.KINDS


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, 1),
        ([], 1),
        ([("other", b"x")], 1),
        ([(dlq.H_REPLAY_ATTEMPT, b"1")], 2),
        ([(dlq.H_REPLAY_ATTEMPT, b"2")], 3),
        ([(dlq.H_REPLAY_ATTEMPT, b"junk")], 1),
        ([(dlq.H_REPLAY_ATTEMPT, b"\xff")], 1),
    ],
)
def test_next_attempt_follows_replay_header(headers, expected):
    assert dlq.next_attempt(headers) == expected


def test_dead_letter_for_replayed_record_raises_attempt():
    record = _record(b"c1", b"{}", [(dlq.H_REPLAY_ATTEMPT, b"2")], topic="payments", offset=7)
    key, value, headers = dlq.dead_letter_for_record(record, kind="scoring_error", message="x")
    dead = dlq.parse_dead_letter(_record(key, value, headers))
    assert dead.attempt == 3 and dead.source_offset == 7 and dead.source_topic == "payments"
    assert dead.is_parked(3) and not dead.is_parked(4)


def test_parse_rejects_records_without_headers():
    with pytest.raises(dlq.MalformedDeadLetter, match="payscore"):
        dlq.parse_dead_letter(_record(b"k", b"v", []))


def test_parse_rejects_bad_attempt():
    _, _, headers = dlq.dead_letter(
        b"k",
        b"v",
        kind="json",
        message="m",
        source_topic="t",
        source_partition=0,
        source_offset=0,
    )
    headers = [(n, b"three" if n == dlq.H_ATTEMPT else v) for n, v in headers]
    with pytest.raises(dlq.MalformedDeadLetter, match="payscore.attempt"):
        dlq.parse_dead_letter(_record(b"k", b"v", headers))


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        dlq.dead_letter(
            b"k",
            b"v",
            kind="json",
            message="m",
            source_topic="t",
            source_partition=0,
            source_offset=0,
            at=datetime(2024, 1, 1),
        )


class _FakeFuture:
    def __init__(self, error=None):
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error
        return None


class _FakeProducer:
    def __init__(self, error=None):
        self.sent, self.flushed, self.error = [], False, error

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append((topic, key, value, headers))
        return _FakeFuture(self.error)

    def flush(self, timeout=None):
        self.flushed = True


def test_send_dead_letters_sends_and_flushes():
    producer = _FakeProducer()
    item = dlq.dead_letter(
        b"k",
        b"\xff",
        kind="encoding",
        message="m",
        source_topic="t",
        source_partition=0,
        source_offset=5,
    )
    assert dlq.send_dead_letters(producer, "t.dlq", [item, item]) == 2
    assert producer.flushed and [s[0] for s in producer.sent] == ["t.dlq", "t.dlq"]
    assert producer.sent[0][2] == b"\xff"


def test_send_dead_letters_failure_is_service_unavailable():
    from kafka.errors import KafkaTimeoutError

    from payscore.errors import ServiceUnavailable

    producer = _FakeProducer(KafkaTimeoutError("no leader"))
    item = dlq.dead_letter(
        b"k", b"v", kind="json", message="m", source_topic="t", source_partition=0, source_offset=5
    )
    with pytest.raises(ServiceUnavailable, match="t.dlq"):
        dlq.send_dead_letters(producer, "t.dlq", [item])


def _size(key, value, headers) -> int:
    return len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)


@pytest.mark.parametrize("length", [1_048_400, 10 * 1024 * 1024])
def test_oversized_message_becomes_a_dead_letter_that_fits(length):
    """A message at Kafka's 1 MiB limit (or a 10 MB one) keeps a prefix, its size and digest."""
    import hashlib

    value = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    key, out, headers = dlq.dead_letter(
        b"cust-1",
        value,
        kind="too_large",
        message="message is too large",
        source_topic="payments",
        source_partition=3,
        source_offset=1234,
    )
    assert _size(key, out, headers) + 512 <= dlq.DEFAULT_MAX_DEAD_LETTER_BYTES
    assert key == b"cust-1" and value.startswith(out) and len(out) > 900_000
    dead = dlq.parse_dead_letter(_record(key, out, headers))
    assert dead.truncated and dead.original_bytes == length
    assert dead.original_sha256 == hashlib.sha256(value).hexdigest()
    assert dead.message.startswith("message is too large; value truncated to its first")
    assert "payments/3/1234" in dead.message and len(dead.message) <= 1024
    assert (dead.kind, dead.source_offset) == ("too_large", 1234)


def test_message_under_the_budget_is_kept_whole_and_not_marked():
    value = b"y" * 990_000
    _, out, headers = dlq.dead_letter(
        None,
        value,
        kind="too_large",
        message="m",
        source_topic="t",
        source_partition=0,
        source_offset=1,
    )
    assert out == value
    dead = dlq.parse_dead_letter(_record(None, out, headers))
    assert not dead.truncated and dead.original_bytes is None


def test_oversized_key_is_cut_too_and_a_small_budget_is_honoured():
    key, out, headers = dlq.dead_letter(
        b"k" * 500_000,
        b"v" * 600_000,
        kind="too_large",
        message="m",
        source_topic="t",
        source_partition=0,
        source_offset=1,
        max_bytes=200_000,
    )
    assert key == b"k" * 1024 and _size(key, out, headers) + 512 <= 200_000
    assert dlq.parse_dead_letter(_record(key, out, headers)).original_bytes == 600_000
    with pytest.raises(ValueError, match="no room"):
        dlq.dead_letter(
            b"k",
            b"v" * 5000,
            kind="too_large",
            message="m",
            source_topic="t",
            source_partition=0,
            source_offset=1,
            max_bytes=3000,
        )
