"""decision_rollup.frauds equals a count straight from the labels and decisions, whatever order
labels and decisions arrive in, however often a label repeats, and for any range the page reads.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import OperationalError

from payscore.config import Settings
from payscore.dashboard import queries as q
from payscore.dashboard.figures import TimeRange
from payscore.dashboard.seed import seed_database
from payscore.errors import ServiceUnavailable
from payscore.store import rollup
from payscore.store.engine import begin_write, make_engine
from payscore.store.initdb import create_schema
from payscore.store.labels import record_analyst_label, record_stream_labels
from payscore.store.schema import decision_rollup, fraud_labels
from payscore.store.writer import DecisionWriter
from tests.store.rows import row

T0 = datetime(2030, 3, 1, 10, 58, 30)
SPAN = 5 * 3600  # seconds of decisions


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'f.db'}"))
        create_schema(eng)
    else:
        eng = make_engine(Settings(database_url=request.getfixturevalue("db_url")), pre_ping=False)
    yield eng
    eng.dispose()


# -- the independent counts: plain SQL text over the two tables, nothing of payscore's ---------


def table_frauds(engine: Engine, start: datetime | None, end: datetime | None) -> int:
    sql = (
        "SELECT COUNT(*) FROM fraud_labels f JOIN scored_transactions s"
        " ON s.transaction_id = f.transaction_id WHERE f.is_fraud = 1"
        " AND (:start IS NULL OR s.scored_at >= :start) AND (:end IS NULL OR s.scored_at < :end)"
    )
    with engine.connect() as conn:
        return int(conn.execute(text(sql), {"start": start, "end": end}).scalar_one())


def table_buckets(engine: Engine) -> dict[tuple[int, datetime], int]:
    sql = (
        "SELECT s.scored_at FROM fraud_labels f JOIN scored_transactions s"
        " ON s.transaction_id = f.transaction_id WHERE f.is_fraud = 1"
    )
    with engine.connect() as conn:
        times = conn.execute(text(sql)).scalars().all()
    out: Counter[tuple[int, datetime]] = Counter()
    for when in times:
        when = when if isinstance(when, datetime) else datetime.fromisoformat(when)
        minute = when.replace(second=0, microsecond=0)
        out[(60, minute)] += 1
        out[(3600, minute.replace(minute=0))] += 1
    return dict(out)


def stored_buckets(engine: Engine) -> dict[tuple[int, datetime], int]:
    c = decision_rollup.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.grain, c.bucket, c.frauds)).all()
    assert all(n is not None for _, _, n in rows)
    return {(g, b): int(n) for g, b, n in rows if n}


def ranges(rng: random.Random) -> list[TimeRange]:
    """All time, open ends, whole hours, and ranges with partial hours and minutes."""
    out = [
        TimeRange(None, None),
        TimeRange(T0 + timedelta(hours=2), None),
        TimeRange(None, T0 + timedelta(hours=3, seconds=17)),
        TimeRange(datetime(2030, 3, 1, 12), datetime(2030, 3, 1, 14)),
        TimeRange(T0 + timedelta(seconds=10), T0 + timedelta(seconds=40)),
    ]
    for _ in range(30):
        start = T0 + timedelta(seconds=rng.uniform(-600, SPAN))
        out.append(TimeRange(start, start + timedelta(seconds=rng.uniform(30, SPAN))))
    return out


def check_exact(engine: Engine, rng: random.Random) -> None:
    """Rollup rows, counted flags and the page's fraud count, against the tables."""
    assert stored_buckets(engine) == table_buckets(engine)
    counted = (
        "SELECT COUNT(*) FROM fraud_labels f WHERE (f.counted = 1) <> (f.is_fraud = 1 AND"
        " EXISTS (SELECT 1 FROM scored_transactions s WHERE s.transaction_id = f.transaction_id))"
        " OR f.counted IS NULL"
    )
    with engine.connect() as conn:
        assert conn.execute(text(counted)).scalar_one() == 0
        for tr in ranges(rng):
            expected = table_frauds(engine, tr.start, tr.end)
            assert q.fraud_labelled(conn, tr, rollup=True) == expected, tr
            assert q.fraud_labelled(conn, tr, rollup=False) == expected, tr
    assert table_frauds(engine, None, None) > 0


def decision(rng: random.Random, tx: str, offset: int) -> dict[str, Any]:
    when = T0 + timedelta(seconds=rng.uniform(0, SPAN))
    return row(tx, offset, when=when)


def label(tx: str, fraud: bool, offset: int) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "is_fraud": fraud,
        "known_at": T0 + timedelta(days=9),
        "kafka_topic": "labels",
        "kafka_partition": 0,
        "kafka_offset": offset,
    }


def test_the_writers_keep_fraud_counts_exact(engine: Engine) -> None:
    rng = random.Random(5)
    w = DecisionWriter(engine)
    ids = [f"tx{i}" for i in range(600)]
    decisions = {tx: decision(rng, tx, i) for i, tx in enumerate(ids)}
    label_offset = 0
    sent: list[dict[str, Any]] = []

    def labels_for(chosen: list[str]) -> list[dict[str, Any]]:
        nonlocal label_offset
        out = []
        for tx in chosen:
            out.append(label(tx, rng.random() < 0.6, label_offset))
            label_offset += 1
        sent.extend(out)
        return out

    # Labels for payments not decided yet (a label before its decision), alone in a batch.
    w.write_batch([], labels=labels_for(ids[400:500]))
    # Decisions in batches, with labels of earlier decisions, of later ones, of their own
    # batch, repeats of stored messages (same coordinates) and fresh messages that repeat or
    # reverse a verdict.
    offset = 0
    for start in range(0, 600, 50):
        batch = [decisions[tx] for tx in ids[start : start + 50]]
        chosen = rng.sample(ids[: start + 50], 15) + rng.sample(ids[start:], 5)
        extra = labels_for(chosen)
        if sent:
            extra += rng.sample(sent, min(5, len(sent)))  # replayed: stored once, counted once
        offset += len(batch)
        w.write_batch(batch, offsets={("g", "payments", 0): offset}, labels=extra)
        check_exact(engine, rng)
    # A replayed batch (below the stored offset) and a decision repeated: counted nowhere.
    w.write_batch([decisions["tx3"]], offsets={("g", "payments", 0): 4}, labels=sent[:10])
    # Analysts: a verdict over a labels-topic label, and on a payment without one.
    with engine.connect() as conn:
        fraud_ids = conn.execute(
            select(fraud_labels.c.transaction_id).where(fraud_labels.c.is_fraud.is_(True))
        ).scalars()
        flip = sorted(set(fraud_ids) & set(ids[:400]))[:3]
    for tx in flip:
        record_analyst_label(engine, tx, False, "erin")
    unlabelled = sorted(set(ids) - {lab["transaction_id"] for lab in sent})[:3]
    for tx in unlabelled:
        record_analyst_label(engine, tx, True, "erin")
    # A labels-topic label after the analyst's verdict changes nothing.
    w.write_batch([], labels=[label(tx, True, 10_000 + i) for i, tx in enumerate(flip)])
    check_exact(engine, rng)
    assert table_frauds(engine, None, None) > 150


def test_seeding_and_initdb_count_frauds(engine: Engine) -> None:
    """The seeder counts its labels; initdb counts an upgraded database from scratch."""
    rng = random.Random(6)
    seed_database(engine, 3_000, now=T0 + timedelta(seconds=SPAN), span_seconds=SPAN)
    check_exact(engine, rng)
    before = stored_buckets(engine)
    # As a database from before the fraud counts: NULL everywhere.
    with engine.begin() as conn:
        conn.execute(update(decision_rollup).values(frauds=None))
        conn.execute(update(fraud_labels).values(counted=None))
    with engine.connect() as conn:
        assert rollup.frauds_uncounted(conn)
        tr = TimeRange(None, None)  # the page still answers, from the tables
        assert q.fraud_labelled(conn, tr) == table_frauds(engine, None, None)
    report = create_schema(engine)
    assert report.frauds_counted == table_frauds(engine, None, None)
    assert stored_buckets(engine) == before
    check_exact(engine, rng)
    assert create_schema(engine).frauds_counted is None  # nothing left to count
    # A full rebuild gives the same.
    rollup.rebuild(engine)
    assert stored_buckets(engine) == before
    # A database made before the columns: the page reads the tables; initdb adds and counts.
    engine.dispose()  # new connections: the page asks once per connection for the column
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE decision_rollup DROP COLUMN frauds"))
        conn.execute(text("ALTER TABLE fraud_labels DROP COLUMN counted"))
    with engine.connect() as conn:
        tr = TimeRange(T0 + timedelta(minutes=30), None)
        assert q.fraud_labelled(conn, tr) == table_frauds(engine, tr.start, None)
    report = create_schema(engine)
    assert sorted(report.columns_added) == ["decision_rollup.frauds", "fraud_labels.counted"]
    assert report.frauds_counted == table_frauds(engine, None, None)
    engine.dispose()
    assert stored_buckets(engine) == before
    check_exact(engine, rng)


@pytest.mark.integration
def test_labels_and_decisions_written_at_once(db_url: str) -> None:
    """Two connections write the same payments' decisions and fraud labels at the same time,
    in either order: each fraud is counted exactly once (a deadlock is retried)."""
    engine = make_engine(Settings(database_url=db_url), pre_ping=False)
    rng = random.Random(7)
    w = DecisionWriter(engine)

    def retried(fn: Any) -> None:
        for _ in range(20):
            try:
                fn()
                return
            except (ServiceUnavailable, OperationalError) as e:
                if "Deadlock" not in str(e) and "1213" not in str(e):
                    raise
        raise AssertionError("deadlocked 20 times")

    def write_labels(batch: list[dict[str, Any]]) -> None:
        with engine.begin() as conn:
            begin_write(conn)
            record_stream_labels(conn, conn.dialect.name, batch)

    def run(barrier: threading.Barrier, errors: list[BaseException], fn: Any, *args: Any) -> None:
        try:
            barrier.wait()
            retried(lambda: fn(*args))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    try:
        offset = 0
        for round_ in range(40):
            ids = [f"r{round_}-{i}" for i in range(10)]
            decisions = [decision(rng, tx, offset + i) for i, tx in enumerate(ids)]
            labels = [label(tx, True, offset + i) for i, tx in enumerate(ids)]
            offset += len(ids)
            offsets = {("g", "payments", 0): offset}
            barrier = threading.Barrier(2)
            errors: list[BaseException] = []
            jobs: list[tuple[Any, ...]] = [
                (w.write_batch, decisions, (), (), offsets),
                (write_labels, labels),
            ]
            if round_ % 2:
                jobs.reverse()  # either started first
            threads = [threading.Thread(target=run, args=(barrier, errors, *j)) for j in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
        check_exact(engine, rng)
        assert table_frauds(engine, None, None) == 400
    finally:
        engine.dispose()
