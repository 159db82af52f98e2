"""Messages at Kafka's own size limits each end as one dead letter; the partition goes on."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.integration.conftest import db_rows, keyed, payments_from

pytestmark = pytest.mark.integration


def _send(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=12_000_000, linger_ms=5
    )
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).get(timeout=60)
    finally:
        producer.close()


def _dead_letters(bootstrap: str, topic: str, want: int) -> list:
    from kafka import KafkaConsumer

    from payscore.stream.dlq import parse_dead_letter

    reader = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=15_000,
    )
    try:
        out = []
        for record in reader:
            out.append(parse_dead_letter(record))
            if len(out) >= want:
                break
        return out
    finally:
        reader.close()


def _blob(size: int, seed: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"z" * (size % 32)


@pytest.mark.parametrize(
    "sizes,topic_limit",
    [
        ((600_000, 1_040_000, 1_048_400), None),  # under, just under and at 1 MiB (defaults)
        ((10 * 1024 * 1024,), 11_000_000),  # a topic whose max.message.bytes allows 10 MB
    ],
    ids=["default-limits", "10MB-topic"],
)
def test_oversized_messages_end_as_one_dead_letter_each_and_the_partition_goes_on(
    sizes, topic_limit, consume_runner, kafka_bootstrap, kafka_admin, db_url, small_world
):
    from kafka.admin import NewTopic

    topic = f"ps-big-{uuid.uuid4().hex[:12]}"
    configs = {"max.message.bytes": str(topic_limit)} if topic_limit else {}
    kafka_admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=configs)],
        wait_for_metadata=True,
    )
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    dlq_topic = consume_runner.env["PAYSCORE_DLQ_TOPIC"]
    payments = payments_from(small_world, 20, 60)
    blobs = [_blob(size, i) for i, size in enumerate(sizes)]
    messages = keyed(payments[:30]) + [(b"big", b) for b in blobs] + keyed(payments[30:])
    _send(kafka_bootstrap, topic, messages)

    assert consume_runner.run("--batch-size", "20", "--idle-exit", "4") == 0, consume_runner.logs()

    rows = db_rows(db_url)
    assert len(rows["decisions"]) == len({tx for tx, *_ in rows["decisions"]}) == len(payments)
    assert sorted(kind for *_, kind in rows["dead_letters"]) == ["too_large"] * len(sizes)
    dead = _dead_letters(kafka_bootstrap, dlq_topic, len(sizes))
    assert [d.source_offset for d in dead] == [30 + i for i in range(len(sizes))]
    for blob, letter in zip(blobs, dead, strict=True):
        assert blob.startswith(letter.value)
        if letter.truncated:
            assert letter.original_bytes == len(blob)
            assert letter.original_sha256 == hashlib.sha256(blob).hexdigest()
            assert f"{topic}/0/{letter.source_offset}" in letter.message
        else:
            assert letter.value == blob
    assert [d.truncated for d in dead] == [len(b) > 999_000 for b in blobs]
