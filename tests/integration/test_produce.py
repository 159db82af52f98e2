"""``payscore produce`` against the real broker: counts, keys, bad messages, topic creation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest

from payscore.core.schema import InvalidMessage, parse_payment

pytestmark = pytest.mark.integration


def payscore_cmd() -> list[str]:
    exe = shutil.which("payscore")
    return [exe] if exe else [sys.executable, "-m", "payscore.cli.app"]


def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the beginning)."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def partition_count(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def test_produce_creates_topic_and_sends_keyed_payments(kafka_bootstrap, payscore_env):
    topic = f"ps-produce-{uuid.uuid4().hex[:10]}"
    env = payscore_env(kafka_bootstrap_servers=kafka_bootstrap, input_topic=topic)
    done = subprocess.run(
        [
            *payscore_cmd(),
            "produce",
            "--count",
            "200",
            "--rate",
            "0",
            "--bad-rate",
            "0.1",
            "--partitions",
            "4",
            "--seed",
            "5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 200" in done.stdout and "bad 20" in done.stdout

    assert partition_count(kafka_bootstrap, topic) == 4
    records = read_all(kafka_bootstrap, topic)
    assert len(records) == 200
    parsed = [parse_payment(r.value) for r in records]
    bad = [p for p in parsed if isinstance(p, InvalidMessage)]
    assert len(bad) == 20
    assert {b.kind for b in bad} <= {"json", "schema", "encoding"}
    good = [
        (r, p) for r, p in zip(records, parsed, strict=True) if not isinstance(p, InvalidMessage)
    ]
    assert all(r.key == p.customer_id.encode() for r, p in good)
    # Same customer, same partition; the simulated world starts after the training period.
    partitions_by_customer: dict[bytes, set[int]] = {}
    for r in records:
        partitions_by_customer.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in partitions_by_customer.values())
    assert min(p.event_time for _, p in good).isoformat() >= "2018-08-01"
    assert len({p.transaction_id for _, p in good}) == len(good)


def test_produce_from_file_with_duplicates_and_labels(kafka_bootstrap, payscore_env, tmp_path):
    topic = f"ps-produce-{uuid.uuid4().hex[:10]}"
    labels = f"{topic}.labels"
    lines = []
    for i in range(40):
        body = {
            "transaction_id": f"f{i}",
            "customer_id": f"c{i % 4}",
            "terminal_id": "t1",
            "amount": "9.99",
            "currency": "EUR",
            "event_time": f"2024-01-{1 + i // 2:02d}T10:00:00+00:00",
            "is_fraud": i in (0, 3),
        }
        lines.append(json.dumps(body))
    path = tmp_path / "payments.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = payscore_env(
        kafka_bootstrap_servers=kafka_bootstrap, input_topic=topic, labels_topic=labels
    )
    done = subprocess.run(
        [
            *payscore_cmd(),
            "produce",
            "--from",
            str(path),
            "--rate",
            "0",
            "--labels",
            "--duplicate-rate",
            "0.25",
            "--partitions",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = read_all(kafka_bootstrap, topic)
    ids = Counter(json.loads(r.value)["transaction_id"] for r in records)
    assert len(records) == 50 and len(ids) == 40  # 10 re-sent with the same transaction id
    assert sum(n - 1 for n in ids.values()) == 10
    label_bodies = [json.loads(r.value) for r in read_all(kafka_bootstrap, labels)]
    # f0 (Jan 1) is known on Jan 8, before the last payment (Jan 20); so is f3 (Jan 2).
    assert sorted(b["transaction_id"] for b in label_bodies) == ["f0", "f3"]
    assert all(b["is_fraud"] is True for b in label_bodies)
    assert label_bodies[0]["known_at"].startswith("2024-01-0")


def test_produce_bad_file_is_one_line_error(kafka_bootstrap, payscore_env, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"transaction_id": "x"}\n', encoding="utf-8")
    env = payscore_env(kafka_bootstrap_servers=kafka_bootstrap, input_topic="ps-produce-broken")
    done = subprocess.run(
        [*payscore_cmd(), "produce", "--from", str(path), "--rate", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "line 1: schema" in done.stderr and "Traceback" not in done.stderr
    assert "broken.jsonl: no usable payments" in done.stderr
