"""The paced benchmark's load generators on the real broker: both deliver every message
intact, and both put a customer's payments in the same partition (murmur2 on the key), so the
consumer sees the same per-customer order whichever one the benchmark used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from payscore.bench.loadgen import CONFLUENT, KAFKA_PYTHON, open_sender
from payscore.config import Settings
from tests.integration.test_produce import read_all

pytestmark = pytest.mark.integration


def _send_all(settings: Settings, generator: str, topic: str, messages: list[tuple[bytes, bytes]]):
    sender = open_sender(settings, generator, topic, linger_ms=5)
    try:
        for key, value in messages:
            sender.send(topic, key, value)
        sender.flush(30)
    finally:
        sender.close()


def test_both_generators_deliver_and_partition_keys_alike(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    messages = [(f"C{i % 97}".encode(), f"payment {i}".encode()) for i in range(600)]
    placed: dict[str, dict[bytes, set[int]]] = {}
    for generator in (KAFKA_PYTHON, CONFLUENT):
        topic = new_topic(partitions=6)
        _send_all(settings, generator, topic, messages)
        records: list[Any] = read_all(kafka_bootstrap, topic)
        assert sorted(r.value for r in records) == sorted(v for _, v in messages)
        by_key: dict[bytes, set[int]] = {}
        for r in records:
            by_key.setdefault(r.key, set()).add(r.partition)
        assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition
        placed[generator] = by_key
    assert placed[CONFLUENT] == placed[KAFKA_PYTHON]
    assert len({p for parts in placed[CONFLUENT].values() for p in parts}) == 6  # keys spread
