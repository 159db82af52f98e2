"""The payment message: its schema, strict validation, and canonical encoding.

``parse_payment`` is the single gate every message passes. It never raises: a bad message
becomes an ``InvalidMessage`` (kind, field, reason) that the consumer dead-letters, so one
malformed payment cannot stop the stream. See docs/messages.md for the format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

MAX_MESSAGE_BYTES = 16_384
MAX_ID_CHARS = 64
# The optional descriptive fields are bounded by what the decisions table stores (its column
# sizes in store/schema.py; a test keeps the two equal): a longer value is rejected here, at
# the one gate, so the consumer, ``score`` and ``train`` all refuse it alike.
MAX_CHANNEL_CHARS = 16
MAX_MERCHANT_CATEGORY_CHARS = 4
MAX_COUNTRY_CHARS = 2
#: Field name -> most characters, for every optional text field.
OPTIONAL_TEXT_LIMITS = {
    "channel": MAX_CHANNEL_CHARS,
    "merchant_category": MAX_MERCHANT_CATEGORY_CHARS,
    "country": MAX_COUNTRY_CHARS,
}
MAX_AMOUNT = Decimal("1000000")
# Event times outside this range are typos or clock faults, not payments.
MIN_EVENT_YEAR, MAX_EVENT_YEAR = 1971, 2099

# A plain decimal string: digits, optional point and at most two decimals. No exponent,
# no underscores, no sign: "1e3" and "1_000" are legal for Python's Decimal but not money.
_AMOUNT_TEXT = re.compile(r"[0-9]{1,7}(?:\.[0-9]{1,2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")

KINDS = ("too_large", "encoding", "json", "schema")


def _check_text(value: str) -> str:
    if not value.isprintable():
        raise ValueError("contains control or non-printable characters")
    if value != value.strip():
        raise ValueError("has leading or trailing whitespace")
    return value


def _check_amount_input(value: Any) -> Any:
    # bool is an int subclass; True must not become an amount of 1.
    if isinstance(value, bool):
        raise ValueError("must be a number or a decimal string, not a boolean")
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        raise ValueError('must be a plain decimal string such as "12.34"')
    return value


def _check_currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        raise ValueError("must be a 3-letter upper-case ISO 4217 code such as EUR")
    return value


def _to_utc(value: datetime) -> datetime:
    if not MIN_EVENT_YEAR <= value.year <= MAX_EVENT_YEAR:
        raise ValueError(f"year must be between {MIN_EVENT_YEAR} and {MAX_EVENT_YEAR}")
    return value.astimezone(timezone.utc)


def _chars(most: int) -> Any:
    """Length bounds of a text field, as metadata placed before its validator."""
    return Field(strict=True, min_length=1, max_length=most)


Text = Annotated[str, _chars(MAX_ID_CHARS), AfterValidator(_check_text)]
Channel = Annotated[str, _chars(MAX_CHANNEL_CHARS), AfterValidator(_check_text)]
MerchantCategory = Annotated[str, _chars(MAX_MERCHANT_CATEGORY_CHARS), AfterValidator(_check_text)]
Country = Annotated[str, _chars(MAX_COUNTRY_CHARS), AfterValidator(_check_text)]
# Constraints first: after a validator pydantic can only check them in Python (4 us a
# payment); here the decimal schema checks them natively, after the input check.
Amount = Annotated[
    Decimal,
    Field(gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False),
    BeforeValidator(_check_amount_input),
]
Currency = Annotated[str, Field(strict=True), AfterValidator(_check_currency)]
EventTime = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_to_utc)]


class Payment(BaseModel):
    """One card payment. Frozen; unknown keys in a message are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    transaction_id: Text
    customer_id: Text
    terminal_id: Text
    amount: Amount
    currency: Currency
    event_time: EventTime
    channel: Channel | None = None
    merchant_category: MerchantCategory | None = None
    country: Country | None = None


@dataclass(frozen=True)
class InvalidMessage:
    """Why a message was rejected; goes to the dead-letter topic with the raw bytes."""

    kind: str  # "too_large" | "encoding" | "json" | "schema"
    field: str | None  # offending field, when known
    message: str  # human-readable reason


def parse_payment(raw: bytes) -> Payment | InvalidMessage:
    """Validate one message. Never raises: every failure is an ``InvalidMessage``."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        size = len(raw)
        if size > MAX_MESSAGE_BYTES:  # before decoding: do no work on oversized input
            return InvalidMessage(
                "too_large", None, f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"
            )
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            return InvalidMessage("encoding", None, f"not valid UTF-8 at byte {e.start}")
        return Payment.model_validate_json(raw)
    except ValidationError as e:
        return _from_validation_error(e)
    except Exception as e:  # the contract is "never raises"
        return InvalidMessage("schema", None, f"cannot validate message: {type(e).__name__}")


def _from_validation_error(error: ValidationError) -> InvalidMessage:
    errors = error.errors(include_url=False, include_input=False)
    first = errors[0]
    kind_of_error = first["type"]
    reason = str(first["msg"]).removeprefix("Value error, ")
    if kind_of_error == "json_invalid":
        return InvalidMessage("json", None, reason)
    if kind_of_error == "model_type" or not first["loc"]:
        return InvalidMessage("json", None, "message must be a JSON object")
    field = str(first["loc"][0])
    if kind_of_error == "missing":
        reason = "is required"
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return InvalidMessage("schema", field, f"{field}: {reason}{suffix}")


def payment_to_json(payment: Payment) -> bytes:
    """Canonical message bytes: fixed key order, amount as a 2-decimal string, UTC offset."""
    body = {
        "transaction_id": payment.transaction_id,
        "customer_id": payment.customer_id,
        "terminal_id": payment.terminal_id,
        "amount": f"{payment.amount:.2f}",
        "currency": payment.currency,
        "event_time": payment.event_time.isoformat(),
        "channel": payment.channel,
        "merchant_category": payment.merchant_category,
        "country": payment.country,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
