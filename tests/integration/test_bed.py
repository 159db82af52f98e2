"""Smoke tests of the test bed itself: the broker and the database are real and usable."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from sqlalchemy import Numeric, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

pytestmark = pytest.mark.integration


def _payscore_cmd() -> list[str]:
    exe = shutil.which("payscore")
    return [exe] if exe else [sys.executable, "-m", "payscore.cli.app"]


def test_produce_and_consume_keeps_keys_values_and_order(kafka_bootstrap, topic, group_id):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sent = [(b"card-1", f"payment-{i}".encode()) for i in range(5)]
    sent += [(b"card-2", b"other")]
    try:
        for key, value in sent:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    received = []
    try:
        for record in consumer:
            received.append(record)
            if len(received) == len(sent):
                break
        assignment = consumer.assignment()
    finally:
        consumer.close()

    assert sorted((r.key, r.value) for r in received) == sorted(sent)
    card1 = [r for r in received if r.key == b"card-1"]
    assert [r.value for r in card1] == [v for k, v in sent if k == b"card-1"]
    assert len({r.partition for r in card1}) == 1  # same key, same partition
    assert [r.offset for r in card1] == sorted(r.offset for r in card1)
    assert assignment == {TopicPartition(topic, p) for p in range(3)}


@pytest.mark.parametrize("bad_name", ["bad topic!", "x" * 300])
def test_broker_rejects_invalid_topic_name(kafka_admin, bad_name):
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError) as info:
        kafka_admin.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)])
    assert "InvalidTopic" in type(info.value).__name__ or "invalid" in str(info.value).lower()


def test_topics_are_not_auto_created(kafka_bootstrap, kafka_admin):
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    name = "ps-test-never-created"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=2_000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(name, b"x").get(timeout=5)
    finally:
        producer.close()
    assert name not in kafka_admin.list_topics()


def test_initdb_cli_creates_schema_on_fresh_mariadb(mariadb_url, payscore_env, _db_admin_engine):
    import uuid

    name = f"ps_{uuid.uuid4().hex[:20]}"
    with _db_admin_engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
    full = make_url(mariadb_url).set(database=name)
    # Password only in the environment, never on the command line.
    # (URL.set(password=None) leaves the password in place: build the URL without it.)
    no_password = full._replace(password=None).render_as_string(hide_password=False)
    assert full.password and full.password not in no_password
    env = payscore_env(database_url=no_password, database_password=full.password)
    try:
        first = subprocess.run(
            [*_payscore_cmd(), "initdb"], env=env, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == 0, first.stderr + first.stdout
        assert "created table scored_transactions" in first.stdout
        assert full.password not in first.stdout + first.stderr

        engine = create_engine(full)
        try:
            schema = inspect(engine)
            tables = set(schema.get_table_names())
            assert {"scored_transactions", "consumer_offsets", "dead_letters"} <= tables
            unique = [
                ix["column_names"]
                for ix in schema.get_indexes("scored_transactions")
                if ix.get("unique")
            ] + [c["column_names"] for c in schema.get_unique_constraints("scored_transactions")]
            assert ["transaction_id"] in unique
            amount = {c["name"]: c for c in schema.get_columns("scored_transactions")}["amount"]
            assert isinstance(amount["type"], Numeric)
        finally:
            engine.dispose()

        second = subprocess.run(
            [*_payscore_cmd(), "initdb"], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 0, second.stderr + second.stdout
        assert "created table" not in second.stdout
        assert "nothing created" in second.stdout
    finally:
        with _db_admin_engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


def test_db_url_is_a_fresh_database_with_the_schema(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM scored_transactions")).scalar_one()
        assert count == 0
    finally:
        engine.dispose()


def test_db_server_stop_and_start(db_server, mariadb_url):
    engine = create_engine(mariadb_url, pool_pre_ping=True, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        db_server.stop()
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db_server.start()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
