"""A block-list entry added while ``payscore consume`` runs, against real Kafka and MariaDB.

While a stream is produced at about 1,000 payments/s, an analyst adds a customer to a block
list (``payscore lists add``). Within a bounded wait the consumer decides that customer's
later payments DECLINED with the list rule's code; removing the entry restores the model's
decisions. Nothing is lost or doubled, every decision records the policy version it was made
under (in offset order they never go back), and the audit trail shows both changes.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from kafka import KafkaProducer
from sqlalchemy import select
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.config import Settings
from payscore.core.policy import parse_rule
from payscore.core.schema import Payment, payment_to_json
from payscore.store.engine import make_engine
from payscore.store.policy import PolicyStore
from payscore.store.schema import scored_transactions
from tests.integration.conftest import expected_decisions, payments_from

pytestmark = pytest.mark.integration

TARGET = "cust-under-attack"
RATE = 1000  # payments a second
WAIT_S = 120  # generous: the machine is shared


class Stream:
    """Produces payments in order, paced, until stopped; every 5th is the target's. Keeps
    what it sent, in order, for the independent expectation."""

    def __init__(self, bootstrap: str, topic: str, base: list[Payment]) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self.topic = topic
        self.base = base
        self.sent: list[Payment] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _payments(self) -> Any:
        span = timedelta(days=60)
        for rnd in range(1000):
            for i, p in enumerate(self.base):
                update: dict[str, Any] = {
                    "transaction_id": f"{p.transaction_id}-r{rnd}",
                    "event_time": p.event_time + rnd * span,
                }
                if i % 5 == 0:
                    update["customer_id"] = TARGET
                yield p.model_copy(update=update)

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for n, p in enumerate(self._payments()):
                if self.stop.is_set():
                    break
                self.producer.send(self.topic, key=p.customer_id.encode(), value=payment_to_json(p))
                self.sent.append(p)
                ahead = n / RATE - (time.monotonic() - started)
                if ahead > 0.01:
                    time.sleep(ahead)
            self.producer.flush(60)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.producer.close()


def rows(url: str) -> list[Any]:
    engine = make_engine(Settings(database_url=url))
    c = scored_transactions.c
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(
                    c.kafka_offset,
                    c.transaction_id,
                    c.customer_id,
                    c.status,
                    c.reason_codes,
                    c.policy_version,
                ).order_by(c.kafka_offset)
            ).all()
    finally:
        engine.dispose()


def cli(url: str, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_block_list_entry_takes_effect_while_consuming(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model
):
    topic = new_topic(1)  # one partition: offset order is decision order
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_POLICY_POLL_SECONDS"] = "1"
    store = PolicyStore(make_engine(Settings(database_url=db_url)))
    store.add_entries("blocked_customers", "customer_id", ["nobody"], "setup")
    store.add_rule(
        parse_rule(
            {
                "code": "BLOCKED_CUSTOMER",
                "kind": "in_list",
                "action": "DECLINE",
                "params": {"list": "blocked_customers"},
            }
        ),
        "setup",
    )
    assert store.version() == 2

    stream = Stream(kafka_bootstrap, topic, payments_from(small_world, 5, 20_000))
    proc = consume_runner.start("--batch-size", "200", "--max-wait-ms", "100", "--idle-exit", "8")
    stream.thread.start()
    try:

        def decided(version: int | None = None, target: bool = False) -> int:
            return sum(
                1
                for r in rows(db_url)
                if (version is None or r.policy_version == version)
                and (not target or r.customer_id == TARGET)
            )

        assert consume_runner.wait_until(proc, lambda: decided() >= 1000, WAIT_S)
        added_at = time.monotonic()
        out = cli(
            db_url,
            "lists",
            "add",
            "blocked_customers",
            TARGET,
            "--actor",
            "ana",
            "--reason",
            "card reported stolen",
        )
        assert "policy version 3" in out
        assert consume_runner.wait_until(proc, lambda: decided(3, target=True) >= 20, WAIT_S)
        print(
            f"first decisions under version 3 seen {time.monotonic() - added_at:.1f} s after "
            "the change (database polled every 0.2 s)"
        )
        out = cli(
            db_url,
            "lists",
            "remove",
            "blocked_customers",
            TARGET,
            "--actor",
            "ana",
            "--reason",
            "card replaced",
        )
        assert "policy version 4" in out
        assert consume_runner.wait_until(proc, lambda: decided(4, target=True) >= 20, WAIT_S)
    finally:
        stream.stop.set()
        stream.thread.join(60)
    assert stream.error is None, stream.error
    assert proc.wait(timeout=WAIT_S) == 0, consume_runner.logs()

    got = rows(db_url)
    sent = stream.sent
    # Nothing lost or doubled: one decision per message, at offsets 0..n-1, ids as sent.
    assert [r.kafka_offset for r in got] == list(range(len(sent)))
    assert [r.transaction_id for r in got] == [p.transaction_id for p in sent]
    # Versions only move forward along the stream: a batch is never split across versions
    # in a way that goes back, and 2 -> 3 -> 4 each decided something.
    versions = [r.policy_version for r in got]
    assert versions == sorted(versions) and set(versions) == {2, 3, 4}
    expected = expected_decisions(small_model, sent)
    for r in got:
        model = expected[r.transaction_id]
        if r.policy_version == 3 and r.customer_id == TARGET:
            assert (r.status, r.reason_codes) == ("DECLINED", "BLOCKED_CUSTOMER"), r
        else:  # the model and the stock rules, as an uninterrupted in-process Scorer decides
            assert (r.status, r.reason_codes) == (model.status, ",".join(model.reasons)), r
    # The audit trail shows who blocked and unblocked the customer, when and why.
    trail = [(e.version, e.actor, e.change, e.reason) for e in store.history("blocked_customers")]
    assert trail[:2] == [
        (4, "ana", "list.remove", "card replaced"),
        (3, "ana", "list.add", "card reported stolen"),
    ]
    store.engine.dispose()
