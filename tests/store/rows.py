"""A scored_transactions row for the store tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

T0 = datetime(2018, 8, 1, 12, 0, 0)


def row(
    tx: str,
    offset: int | None,
    partition: int = 0,
    topic: str | None = "payments",
    when: datetime = T0,
) -> dict[str, Any]:
    """A decision of ``tx`` read from ``topic``/``partition`` at ``offset``, scored at ``when``."""
    return {
        "transaction_id": tx,
        "customer_id": "c1",
        "terminal_id": "t1",
        "amount": Decimal("12.34"),
        "currency": "EUR",
        "event_time": when,
        "received_at": when,
        "scored_at": when,
        "score": 0.1,
        "prediction": 0,
        "status": "APPROVED",
        "reason_codes": "",
        "model_version": "m1",
        "channel": None,
        "merchant_category": None,
        "country": None,
        "kafka_topic": topic,
        "kafka_partition": partition if topic else None,
        "kafka_offset": offset if topic else None,
    }
