"""Send payments to payscore's input topic from your own service, with plain kafka-python.

This file imports nothing from payscore: copy it into the service that takes payments. Each
message is one JSON object with the fields of docs/messages.md, keyed by the customer id so
that a customer's payments stay in order on one partition (velocity rules count them in order).

    python examples/produce_payments.py --count 20
    python examples/produce_payments.py --bootstrap-servers kafka-1:9092 --topic payments

Defaults come from the variables payscore itself reads, PAYSCORE_KAFKA_BOOTSTRAP_SERVERS and
PAYSCORE_INPUT_TOPIC, then localhost:9092 and "payments".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

# The repository's lint keeps kafka inside payscore.stream; this file stands alone.
from kafka import KafkaProducer


def payment_message(
    transaction_id: str,
    customer_id: str,
    terminal_id: str,
    amount: Decimal,
    event_time: datetime,
    currency: str = "EUR",
) -> bytes:
    """One payment as payscore expects it: amount as a 2-decimal string, time with its offset."""
    if event_time.tzinfo is None:
        raise ValueError("event_time needs a UTC offset; naive times are dead-lettered")
    body = {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "terminal_id": terminal_id,
        # A string, never a float: 0.1 + 0.2 must not become 0.30000000000000004.
        "amount": str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
        "currency": currency,
        "event_time": event_time.isoformat(),
        "channel": "ecom",
        "merchant_category": "5411",
        "country": "FR",
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("PAYSCORE_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="comma-separated host:port list (env PAYSCORE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--topic",
        default=os.environ.get("PAYSCORE_INPUT_TOPIC", "payments"),
        help="the topic payscore consumes (env PAYSCORE_INPUT_TOPIC)",
    )
    parser.add_argument("--count", type=int, default=10, help="how many payments to send")
    args = parser.parse_args()

    producer = KafkaProducer(
        bootstrap_servers=[s.strip() for s in args.bootstrap_servers.split(",")],
        acks="all",  # a payment is sent once every in-sync replica has it
        enable_idempotence=True,  # a retried send is not written twice
        linger_ms=10,
    )
    run = uuid.uuid4().hex[:8]  # transaction ids must be unique: payscore drops repeats
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rng = random.Random()
    sent = []
    try:
        for i in range(args.count):
            customer = f"c-{rng.randrange(1, 50):04d}"
            message = payment_message(
                transaction_id=f"tx-{run}-{i:06d}",
                customer_id=customer,
                terminal_id=f"t-{rng.randrange(1, 200):04d}",
                amount=Decimal(rng.randrange(100, 30_000)) / 100,
                event_time=now + timedelta(seconds=i),
            )
            sent.append(producer.send(args.topic, key=customer.encode("utf-8"), value=message))
        producer.flush(timeout=30)
        for future in sent:
            future.get(timeout=30)  # raises if this payment was not delivered
    finally:
        producer.close()
    print(f"sent {args.count} payments to topic {args.topic} at {args.bootstrap_servers}")


if __name__ == "__main__":
    main()
