"""Message validation: one good payment, many bad ones, and random bytes that never raise."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from payscore.core.schema import (
    MAX_MESSAGE_BYTES,
    InvalidMessage,
    Payment,
    parse_payment,
    payment_to_json,
)

GOOD = {
    "transaction_id": "tx-1",
    "customer_id": "c-42",
    "terminal_id": "t-7",
    "amount": "12.34",
    "currency": "EUR",
    "event_time": "2018-04-01T10:00:00+02:00",
}


def encode(**changes: object) -> bytes:
    body: dict[str, object] = {**GOOD, **changes}
    return json.dumps(body).encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != field}).encode()


def test_good_payment_is_parsed_and_normalised_to_utc() -> None:
    p = parse_payment(encode(channel="web", country="FR", extra_key="ignored"))
    assert isinstance(p, Payment)
    assert p.amount == Decimal("12.34")
    assert p.event_time == datetime(2018, 4, 1, 8, 0, tzinfo=timezone.utc)
    assert p.event_time.utcoffset() is not None and p.event_time.utcoffset().total_seconds() == 0
    assert p.channel == "web" and p.country == "FR" and p.merchant_category is None
    assert not hasattr(p, "extra_key")


@pytest.mark.parametrize(
    "amount, expected",
    [(12.5, Decimal("12.5")), (7, Decimal("7")), ("0.01", Decimal("0.01")), (1000000, 1000000)],
)
def test_amount_accepts_numbers_and_decimal_strings(amount: object, expected: object) -> None:
    p = parse_payment(encode(amount=amount))
    assert isinstance(p, Payment)
    assert p.amount == Decimal(str(expected))


def test_payment_is_frozen() -> None:
    p = parse_payment(encode())
    assert isinstance(p, Payment)
    with pytest.raises(ValueError):
        p.amount = Decimal(1)  # type: ignore[misc]


def test_round_trip_through_canonical_json() -> None:
    p = parse_payment(encode(merchant_category="5411", amount="3.1"))
    assert isinstance(p, Payment)
    raw = payment_to_json(p)
    body = json.loads(raw)
    assert list(body) == list(Payment.model_fields)
    assert body["amount"] == "3.10"
    assert body["event_time"] == "2018-04-01T08:00:00+00:00"
    assert parse_payment(raw) == p
    assert payment_to_json(p) == raw  # deterministic


BAD_FIELDS = [
    # (field, value, what the reason should mention)
    ("amount", True, "boolean"),
    ("amount", False, "boolean"),
    ("amount", "NaN", "decimal string"),
    ("amount", "nan", "decimal string"),
    ("amount", "Infinity", "decimal string"),
    ("amount", "1e3", "decimal string"),
    ("amount", "1_000", "decimal string"),
    ("amount", "-5", "decimal string"),
    ("amount", " 12", "decimal string"),
    ("amount", "", "decimal string"),
    ("amount", 0, "greater than 0"),
    ("amount", -1.5, "greater than 0"),
    ("amount", "0.00", "greater than 0"),
    ("amount", 1_000_000.01, "less than or equal"),
    ("amount", 1e300, "less than or equal"),
    ("amount", 12.345, "2 decimal places"),
    ("amount", "12.345", "decimal string"),
    ("amount", None, "decimal"),
    ("amount", [1], "decimal"),
    ("amount", {"v": 1}, "decimal"),
    ("currency", "eur", "ISO 4217"),
    ("currency", "EURO", "ISO 4217"),
    ("currency", "E1R", "ISO 4217"),
    ("currency", 978, "string"),
    ("event_time", "2018-04-01T10:00:00", "timezone"),
    ("event_time", "2018-04-01", "datetime"),
    ("event_time", "yesterday", "datetime"),
    ("event_time", 1522569600, "datetime"),
    ("event_time", "1900-01-01T00:00:00+00:00", "year"),
    ("event_time", "9999-12-31T23:00:00-05:00", "year"),
    ("transaction_id", "", "at least 1"),
    ("transaction_id", "x" * 65, "at most 64"),
    ("transaction_id", 12345, "string"),
    ("transaction_id", "a\x00b", "control"),
    ("transaction_id", "tab\there", "control"),
    ("transaction_id", "zero\u200bwidth", "control"),
    ("transaction_id", " padded", "whitespace"),
    ("customer_id", "line\nbreak", "control"),
    ("customer_id", None, "string"),
    ("terminal_id", "\x7f", "control"),
    ("channel", "web\r\n", "control"),
    ("country", "FRA", "at most 2"),
    ("channel", "x" * 17, "at most 16"),
    ("merchant_category", "54111", "at most 4"),
    ("merchant_category", 5411, "string"),
]


@pytest.mark.parametrize("field, value, reason", BAD_FIELDS)
def test_bad_field_is_a_schema_error_naming_the_field(
    field: str, value: object, reason: str
) -> None:
    result = parse_payment(encode(**{field: value}))
    assert isinstance(result, InvalidMessage), result
    assert result.kind == "schema"
    assert result.field == field
    assert reason.lower() in result.message.lower()
    assert result.message.startswith(f"{field}:")


@pytest.mark.parametrize(
    "field", ["transaction_id", "customer_id", "terminal_id", "amount", "currency", "event_time"]
)
def test_missing_required_field(field: str) -> None:
    result = parse_payment(without(field))
    assert result == InvalidMessage("schema", field, f"{field}: is required")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"transaction_id":"a","customer_id":"c","terminal_id":"t","amount":NaN,'
        b'"currency":"EUR","event_time":"2018-04-01T00:00:00Z"}',
        b'{"transaction_id":"a","customer_id":"c","terminal_id":"t","amount":Infinity,'
        b'"currency":"EUR","event_time":"2018-04-01T00:00:00Z"}',
        b'{"transaction_id":"a","customer_id":"c","terminal_id":"t","amount":-Infinity,'
        b'"currency":"EUR","event_time":"2018-04-01T00:00:00Z"}',
        b'{"transaction_id":"a","customer_id":"c","terminal_id":"t","amount":1e999,'
        b'"currency":"EUR","event_time":"2018-04-01T00:00:00Z"}',
    ],
)
def test_non_finite_json_numbers_are_rejected(raw: bytes) -> None:
    result = parse_payment(raw)
    assert isinstance(result, InvalidMessage)
    assert result.field == "amount"


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"", "json"),
        (b"{", "json"),
        (b"not json", "json"),
        (b"[1, 2]", "json"),
        (b"null", "json"),
        (b'"a string"', "json"),
        (b"12", "json"),
        (b"\xff\xfe{}", "encoding"),
        (b'{"transaction_id": "caf\xe9"}', "encoding"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "too_large"),
    ],
)
def test_message_level_errors(raw: bytes, kind: str) -> None:
    result = parse_payment(raw)
    assert isinstance(result, InvalidMessage)
    assert result.kind == kind
    assert result.field is None
    assert result.message


def test_size_limit_is_inclusive() -> None:
    body = encode()
    padded = body[:-1] + b" " * (MAX_MESSAGE_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_MESSAGE_BYTES
    assert isinstance(parse_payment(padded), Payment)
    assert parse_payment(padded + b" ").kind == "too_large"  # type: ignore[union-attr]


def test_several_problems_are_counted() -> None:
    result = parse_payment(encode(amount="x", currency="x", event_time="x"))
    assert isinstance(result, InvalidMessage)
    assert result.field == "amount"
    assert "(and 2 more problems)" in result.message


def test_random_bytes_never_raise() -> None:
    rng = random.Random(1234)
    good = encode()
    for _ in range(3000):
        choice = rng.random()
        if choice < 0.4:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:  # mutate a good message so the parser gets past the JSON layer sometimes
            buf = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            raw = bytes(buf)
        result = parse_payment(raw)
        assert isinstance(result, (Payment, InvalidMessage))
        if isinstance(result, InvalidMessage):
            assert result.kind in {"too_large", "encoding", "json", "schema"}
