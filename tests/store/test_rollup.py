"""decision_rollup always equals a GROUP BY over scored_transactions, whatever the writer saw."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, event, func, select

from payscore.config import Settings
from payscore.store import rollup
from payscore.store.engine import make_engine
from payscore.store.schema import decision_rollup, metadata, scored_transactions
from payscore.store.writer import DecisionWriter

T0 = datetime(2030, 3, 1, 10, 58, 30)
STATUSES = ("APPROVED", "REVIEW", "DECLINED")


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def mariadb_engine(db_url: str) -> Iterator[Engine]:
    """The engine ``payscore consume`` writes with (no pre-ping, our datetime literal)."""
    eng = make_engine(Settings(database_url=db_url), pre_ping=False)
    yield eng
    eng.dispose()


def decision(rng: random.Random, tx: str, offset: int, partition: int = 0) -> dict[str, Any]:
    scored = T0 + timedelta(seconds=rng.uniform(0, 3 * 3600))
    score = rng.choice([0.0, 0.05, 0.5, 0.8, 0.95, 1.0, rng.random(), rng.random()])
    return {
        "transaction_id": tx,
        "customer_id": f"c{rng.randrange(5)}",
        "terminal_id": f"t{rng.randrange(5)}",
        "amount": Decimal("1.00"),
        "currency": "EUR",
        "event_time": T0,
        "received_at": scored - timedelta(milliseconds=5),
        "scored_at": scored,
        "score": score,
        "prediction": 0,
        "status": rng.choice(STATUSES),
        "reason_codes": "",
        "model_version": "m1",
        "kafka_topic": "payments",
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def expected_rollup(engine: Engine) -> dict[tuple[int, datetime], dict[str, int]]:
    """The rollup recomputed from the decisions table, independently of the writer's code."""
    st = scored_transactions.c
    with engine.connect() as conn:
        rows = conn.execute(select(st.scored_at, st.status, st.score)).all()
    out: dict[tuple[int, datetime], dict[str, int]] = {}
    for scored_at, status, score in rows:
        minute = scored_at.replace(second=0, microsecond=0)
        for key in ((60, minute), (3600, minute.replace(minute=0))):
            acc = out.setdefault(key, dict.fromkeys(rollup.COUNT_COLUMNS, 0))
            acc["decisions"] += 1
            acc[status.lower()] += 1
            acc[f"score_{min(int(score * 20), 19):02d}"] += 1
    return out


def stored_rollup(engine: Engine) -> dict[tuple[int, datetime], dict[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(decision_rollup)).mappings().all()
    return {(r["grain"], r["bucket"]): {c: int(r[c]) for c in rollup.COUNT_COLUMNS} for r in rows}


def run_random_batches(engine: Engine, seed: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Batches with stored and in-batch duplicates, replays, a race and a failed batch."""
    rng = random.Random(seed)
    w = DecisionWriter(engine)
    offset = 0
    ids: list[str] = []
    history: list[tuple[list[dict[str, Any]], dict[Any, int]]] = []
    for b in range(25):
        batch = []
        for _ in range(rng.randint(0, 40)):
            if ids and rng.random() < 0.15:
                tx = rng.choice(ids)  # already decided (or earlier in this batch)
            else:
                tx = f"tx-{seed}-{offset}"
                ids.append(tx)
            batch.append(decision(rng, tx, offset))
            offset += 1
        offsets = {("g", "payments", 0): offset}
        if b == 10:
            fail_once(engine, w, batch, offsets)
        w.write_batch(batch, offsets=offsets)
        history.append((batch, offsets))
        if rng.random() < 0.3:  # a replay of an earlier batch: skipped, counted nowhere
            old, old_offsets = rng.choice(history)
            again = w.write_batch(old, offsets=old_offsets)
            assert again.decided == 0 and again.skipped_replayed == len(old)
    # Rows without Kafka coordinates, one of them a duplicate found only at insert time.
    loose = [decision(rng, "loose-1", 0), decision(rng, "loose-2", 0)]
    for r in loose:
        r.update(kafka_topic=None, kafka_partition=None, kafka_offset=None)
    w.write_batch(loose[:1])
    # Hide the stored id from the pre-check so the insert races: only "loose-2" counts.
    monkeypatch.setattr("payscore.store.writer._existing", lambda conn, ids: set())
    result = w.write_batch(loose)
    assert result.decided == 1 and result.duplicate_ids == ("loose-1",)
    monkeypatch.undo()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(scored_transactions)).scalar())


def fail_once(
    engine: Engine, w: DecisionWriter, batch: list[dict[str, Any]], offsets: dict[Any, int]
) -> None:
    """A batch whose rollup statement fails: nothing of it may stay, rollup included."""

    def boom(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "decision_rollup" in statement and statement.lstrip().upper().startswith("INSERT"):
            raise RuntimeError("disk on fire")

    before = stored_rollup(engine)
    with engine.connect() as conn:
        decided = conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
    event.listen(engine, "before_cursor_execute", boom)
    try:
        with pytest.raises(RuntimeError):
            w.write_batch(batch, offsets=offsets)
    finally:
        event.remove(engine, "before_cursor_execute", boom)
    assert stored_rollup(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(scored_transactions)).scalar() == (
            decided
        )


def check_writer_keeps_rollup_exact(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    total = run_random_batches(engine, 3, monkeypatch)
    assert total > 200
    stored = stored_rollup(engine)
    assert stored == expected_rollup(engine)
    assert sum(v["decisions"] for (g, _), v in stored.items() if g == 3600) == total
    # rebuild() from the table gives the same rows.
    with engine.begin() as conn:
        conn.execute(delete(decision_rollup))
    assert rollup.rebuild(engine) == total
    assert stored_rollup(engine) == stored


def test_writer_keeps_rollup_exact_sqlite(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_writer_keeps_rollup_exact(sqlite_engine, monkeypatch)


@pytest.mark.integration
def test_writer_keeps_rollup_exact_mariadb(
    mariadb_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_writer_keeps_rollup_exact(mariadb_engine, monkeypatch)


def test_score_bins_match_sql_floor() -> None:
    assert [rollup.score_bin(s) for s in (0.0, 0.049999, 0.05, 0.5, 0.95, 0.999999, 1.0)] == [
        0, 0, 1, 10, 19, 19, 19,
    ]  # fmt: skip
    assert rollup.score_bin(-0.1) == 0 and rollup.score_bin(1.5) == 19


def test_summarise_is_one_row_per_grain_and_bucket() -> None:
    rows = [
        {"scored_at": T0 + timedelta(seconds=s), "status": st, "score": 0.3}
        for s, st in ((0, "REVIEW"), (20, "APPROVED"), (40, "DECLINED"), (3600, "APPROVED"))
    ]
    out = rollup.summarise(rows)
    keys = [(r["grain"], r["bucket"]) for r in out]
    assert keys == [
        (60, datetime(2030, 3, 1, 10, 58)),
        (60, datetime(2030, 3, 1, 10, 59)),
        (60, datetime(2030, 3, 1, 11, 58)),
        (3600, datetime(2030, 3, 1, 10, 0)),
        (3600, datetime(2030, 3, 1, 11, 0)),
    ]
    assert [r["decisions"] for r in out] == [2, 1, 1, 3, 1]
    assert out[3]["approved"] == out[3]["review"] == out[3]["declined"] == 1
    assert out[3]["score_06"] == 3


def test_summarise_equals_a_row_by_row_count() -> None:
    rng = random.Random(7)
    statuses = ("APPROVED", "REVIEW", "DECLINED", "UNKNOWN")
    times = [T0 + timedelta(seconds=rng.randrange(0, 7200)) for _ in range(5)]
    rows = [
        {"scored_at": rng.choice(times), "status": rng.choice(statuses), "score": rng.random()}
        for _ in range(600)
    ]
    expected: dict[tuple[int, datetime], dict[str, int]] = {}
    for row in rows:
        for grain in (60, 3600):
            acc = expected.setdefault((grain, rollup.truncate(row["scored_at"], grain)), {})
            for column in (
                "decisions",
                rollup.STATUS_COLUMNS.get(row["status"]),
                rollup.SCORE_COLUMNS[rollup.score_bin(row["score"])],
            ):
                if column is not None:
                    acc[column] = acc.get(column, 0) + 1
    out = rollup.summarise(rows)
    assert [(r["grain"], r["bucket"]) for r in out] == sorted(expected)
    for r in out:
        counted = {c: r[c] for c in rollup.COUNT_COLUMNS if r[c]}
        assert counted == expected[(r["grain"], r["bucket"])]
