"""``payscore replay-dlq`` against the real broker and MariaDB: once, dry run, filters, parking."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select

from payscore.config import Settings
from payscore.core.schema import Payment, payment_to_json
from payscore.store.schema import consumer_offsets
from payscore.stream import dlq
from payscore.stream.kafka import make_producer
from tests.integration.test_produce import payscore_cmd, read_all

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc)


def _payment(i: int) -> Payment:
    return Payment(
        transaction_id=f"rp-{i}",
        customer_id=f"c{i}",
        terminal_id="t1",
        amount=Decimal("20.00"),
        currency="EUR",
        event_time=datetime(2018, 8, 2, tzinfo=timezone.utc) + timedelta(minutes=i),
    )


def _put_dead_letters(bootstrap: str, dlq_topic: str, items) -> None:
    producer = make_producer(Settings(kafka_bootstrap_servers=bootstrap))
    try:
        dlq.send_dead_letters(producer, dlq_topic, items)
    finally:
        producer.close()


def _letter(source, i, value, kind="scoring_error", attempt=1, at=NOW):
    return dlq.dead_letter(
        f"c{i}".encode(),
        value,
        kind=kind,
        message=f"failure {i}",
        source_topic=source,
        source_partition=0,
        source_offset=i,
        attempt=attempt,
        at=at,
    )


def _run(env, *args):
    done = subprocess.run(
        [*payscore_cmd(), "replay-dlq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _remembered(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(consumer_offsets)).fetchall()
    finally:
        engine.dispose()


@pytest.fixture
def setup(kafka_bootstrap, new_topic, db_url, payscore_env):
    source, dlq_topic = new_topic(3), new_topic(2)
    env = payscore_env(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=db_url,
        input_topic=source,
        dlq_topic=dlq_topic,
        max_dlq_attempts=3,
    )
    return source, dlq_topic, env


def test_replay_once_dry_run_and_parking(kafka_bootstrap, db_url, setup):
    source, dlq_topic, env = setup
    good = [payment_to_json(_payment(i)) for i in range(3)]
    letters = [_letter(source, i, v) for i, v in enumerate(good)]
    letters.append(_letter(source, 3, b"\xff\xfe raw", kind="encoding"))
    letters.append(_letter(source, 4, payment_to_json(_payment(4)), attempt=3))  # parked
    letters.append(_letter(source, 5, payment_to_json(_payment(5)), attempt=2))
    _put_dead_letters(kafka_bootstrap, dlq_topic, letters)

    out = _run(env, "--dry-run")
    assert "5 would be replayed" in out and "1 would be parked" in out
    assert "nothing was sent" in out
    assert read_all(kafka_bootstrap, source) == [] and _remembered(db_url) == []

    out = _run(env)
    assert "5 replayed" in out and "1 parked" in out
    replayed = read_all(kafka_bootstrap, source)
    assert sorted(r.value for r in replayed) == sorted(
        [*good, b"\xff\xfe raw", payment_to_json(_payment(5))]
    )
    by_value = {r.value: r for r in replayed}
    assert by_value[good[1]].key == b"c1"
    assert dict(by_value[good[1]].headers)[dlq.H_REPLAY_ATTEMPT] == b"1"
    assert dict(by_value[payment_to_json(_payment(5))].headers)[dlq.H_REPLAY_ATTEMPT] == b"2"
    parked = read_all(kafka_bootstrap, f"{dlq_topic}.parked")
    assert [r.value for r in parked] == [payment_to_json(_payment(4))]
    assert dlq.parse_dead_letter(parked[0]).attempt == 3
    assert _remembered(db_url)  # watermarks stored

    out = _run(env)
    assert "0 replayed" in out and "0 parked" in out
    assert len(read_all(kafka_bootstrap, source)) == 5

    # A new dead letter after the first run is replayed by the next one, alone.
    _put_dead_letters(kafka_bootstrap, dlq_topic, [_letter(source, 9, good[0])])
    out = _run(env)
    assert "1 replayed" in out
    assert len(read_all(kafka_bootstrap, source)) == 6


def test_kind_filter_leaves_other_kinds_for_later(kafka_bootstrap, setup):
    source, dlq_topic, env = setup
    _put_dead_letters(
        kafka_bootstrap,
        dlq_topic,
        [
            _letter(source, 0, b"{}", kind="schema"),
            _letter(source, 1, payment_to_json(_payment(1))),
            _letter(source, 2, b"{", kind="json"),
        ],
    )
    out = _run(env, "--kind", "scoring_error")
    assert "1 replayed" in out and "2 skipped by filter" in out
    assert [r.value for r in read_all(kafka_bootstrap, source)] == [payment_to_json(_payment(1))]
    out = _run(env)  # the schema and json letters were not forgotten; scoring_error is done
    assert "2 replayed" in out
    assert len(read_all(kafka_bootstrap, source)) == 3


def test_time_window_and_limit(kafka_bootstrap, setup):
    source, dlq_topic, env = setup
    old = NOW - timedelta(days=3)
    _put_dead_letters(
        kafka_bootstrap,
        dlq_topic,
        [_letter(source, 0, b"old", at=old)]
        + [_letter(source, i, b"new%d" % i) for i in (1, 2, 3)],
    )
    since = (NOW - timedelta(days=1)).isoformat()
    out = _run(env, "--since", since, "--limit", "2", "--dry-run")
    assert "2 would be replayed" in out
    out = _run(env, "--since", since, "--limit", "2")
    assert "2 replayed" in out
    values = [r.value for r in read_all(kafka_bootstrap, source)]
    assert len(values) == 2 and b"old" not in values


def test_fixed_dead_letters_end_as_decisions_exactly_once(
    consume_runner, kafka_bootstrap, db_url, small_world
):
    """Replayed valid payments are decided once; still-bad ones climb attempts, then park."""
    from tests.integration.conftest import db_rows, keyed, payments_from
    from tests.integration.conftest import produce as put

    env = consume_runner.env
    source, dlq_topic = env["PAYSCORE_INPUT_TOPIC"], env["PAYSCORE_DLQ_TOPIC"]
    payments = payments_from(small_world, 20, 40)
    put(kafka_bootstrap, source, keyed(payments[:30]))
    consume = ("--batch-size", "50", "--max-wait-ms", "100", "--idle-exit", "4")
    assert consume_runner.run(*consume) == 0, consume_runner.logs()
    assert len(db_rows(db_url)["decisions"]) == 30

    # Ten payments whose scoring failed (cause now fixed), two messages that are still bad.
    letters = [
        dlq.dead_letter(
            p.customer_id.encode(),
            payment_to_json(p),
            kind="scoring_error",
            message="model unavailable",
            source_topic=source,
            source_partition=0,
            source_offset=100 + i,
        )
        for i, p in enumerate(payments[30:])
    ]
    letters += [
        dlq.dead_letter(
            b"x",
            b'{"transaction_id": "broken-1"}',
            kind="schema",
            message="m",
            source_topic=source,
            source_partition=0,
            source_offset=200,
        ),
        dlq.dead_letter(
            b"y",
            b"\xff\xfe",
            kind="encoding",
            message="m",
            source_topic=source,
            source_partition=0,
            source_offset=201,
        ),
    ]
    _put_dead_letters(kafka_bootstrap, dlq_topic, letters)

    assert "12 replayed" in _run(env)
    assert consume_runner.run(*consume) == 0, consume_runner.logs()
    rows = db_rows(db_url)
    decided = [r.transaction_id for r in rows["decisions"]]
    assert len(decided) == 40 and len(set(decided)) == 40
    assert {p.transaction_id for p in payments} == set(decided)

    # The two bad ones failed again: attempt 2, read from the replay header by the consumer.
    again = [dlq.parse_dead_letter(r) for r in read_all(kafka_bootstrap, dlq_topic)]
    assert sorted(d.attempt for d in again if d.attempt > 1) == [2, 2]
    assert "2 replayed" in _run(env)  # attempt 2 < 3: one more try
    assert consume_runner.run(*consume) == 0, consume_runner.logs()
    out = _run(env)
    assert "0 replayed" in out and "2 parked" in out  # attempt 3 = max_dlq_attempts
    assert len(read_all(kafka_bootstrap, f"{dlq_topic}.parked")) == 2

    assert "0 replayed" in _run(env)
    assert consume_runner.run(*consume) == 0, consume_runner.logs()
    assert len(db_rows(db_url)["decisions"]) == 40


def test_foreign_and_truncated_dead_letters_are_parked_never_replayed(
    kafka_bootstrap, kafka_admin, setup
):
    """A dead letter naming another topic as its source is not replayed there (anyone who
    can write the dead-letter topic could inject into any topic), nor is that topic created;
    a truncated dead letter is parked too, since its value is only a prefix."""
    source, dlq_topic, env = setup
    foreign = f"{source}-not-ours"
    letters = [
        _letter(foreign, 1, payment_to_json(_payment(1))),
        dlq.dead_letter(
            b"big",
            b"x" * 200_000,
            kind="too_large",
            message="message is too large",
            source_topic=source,
            source_partition=0,
            source_offset=2,
            max_bytes=100_000,
        ),
        _letter(source, 3, payment_to_json(_payment(3))),
    ]
    _put_dead_letters(kafka_bootstrap, dlq_topic, letters)

    out = _run(env)
    assert "1 replayed" in out and "2 parked" in out
    assert [r.value for r in read_all(kafka_bootstrap, source)] == [payment_to_json(_payment(3))]
    assert foreign not in kafka_admin.list_topics()
    parked = [dlq.parse_dead_letter(r) for r in read_all(kafka_bootstrap, f"{dlq_topic}.parked")]
    assert sorted(p.source_topic for p in parked) == sorted([foreign, source])
    cut = next(p for p in parked if p.truncated)
    assert cut.original_bytes == 200_000 and len(cut.value or b"") < 100_000
