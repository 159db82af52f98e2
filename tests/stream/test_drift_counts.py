"""Drift counts on MariaDB: the pipeline bins each decided payment into the champion's
reference bins and the writer counts, in the batch's transaction, exactly the rows it stored:
never twice for a batch written again or delivered again."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from payscore.config import Settings
from payscore.core import simulator, training
from payscore.core.drift import SCORE, Codes, Reference
from payscore.core.features import FeatureEngine
from payscore.core.model import ModelArtifact
from payscore.core.schema import payment_to_json
from payscore.pipeline import Pipeline, RawMessage, build_scorer
from payscore.store.drift import BIN_COLUMNS
from payscore.store.engine import make_engine
from payscore.store.schema import feature_histograms, scored_transactions
from payscore.store.writer import BatchRequest, DecisionWriter

GROUP, TOPIC = "g-drift", "payments"


@pytest.fixture(scope="module")
def world_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ModelArtifact]:
    """A small world and a model trained on it by ``payscore train``'s path (so with the
    reference it records)."""
    world = simulator.generate_world(n_customers=60, n_terminals=120, n_days=40)
    world = world[world["TX_AMOUNT"] > 0].reset_index(drop=True)
    path = Path(tmp_path_factory.mktemp("drift")) / "p.csv"
    simulator.write_csv(world[world["TX_TIME_DAYS"] < 30], path)
    artifact, _ = training.train_on_file(training.read_history(path))
    assert Reference.from_metadata(artifact.metadata) is not None
    return world, artifact


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(Settings(database_url=db_url), pre_ping=False)
    yield engine
    engine.dispose()


def _messages(world: Any, start: int, count: int) -> list[RawMessage]:
    payments = simulator.to_payments(world.iloc[start : start + count])
    return [
        RawMessage(TOPIC, 0, start + i, p.customer_id.encode(), payment_to_json(p))
        for i, p in enumerate(payments)
    ]


def _pipeline(db: Engine, artifact: ModelArtifact) -> Pipeline:
    return Pipeline(build_scorer(Settings(), artifact), DecisionWriter(db), GROUP)


def _stored_counts(db: Engine) -> dict[str, list[int]]:
    with db.connect() as conn:
        rows = conn.execute(select(feature_histograms)).all()
    out: dict[str, list[int]] = {}
    for r in rows:
        m = r._mapping
        assert m["model_version"]
        got = [int(m[c]) for c in BIN_COLUMNS]
        before = out.get(m["feature"], [0] * len(got))
        out[m["feature"]] = [a + b for a, b in zip(before, got, strict=True)]
    return out


def _recount(db: Engine, world: Any, artifact: ModelArtifact) -> dict[str, Counter[int]]:
    """An independent count of what is stored: each stored payment's features recomputed by a
    fresh engine over the same messages (offset order), binned with ``bisect``; the score as
    stored."""
    with db.connect() as conn:
        stored = conn.execute(
            select(scored_transactions.c.kafka_offset, scored_transactions.c.score).order_by(
                scored_transactions.c.kafka_offset
            )
        ).all()
    last = max(o for o, _ in stored)
    payments = simulator.to_payments(world.iloc[: last + 1])
    engine = FeatureEngine(label_delay_days=7)
    X = engine.transform(payments)
    reference = Reference.from_metadata(artifact.metadata)
    assert reference is not None
    out: dict[str, Counter[int]] = {}
    for series in reference.series:
        edges = list(series.edges)
        col = None if series.name == SCORE else engine.feature_names.index(series.name)
        counted: Counter[int] = Counter()
        for offset, score in stored:
            value = float(score) if col is None else float(X[offset, col])
            counted[len(edges) + 1 if value != value else bisect_left(edges, value)] += 1
        out[series.name] = counted
    return out


def _assert_counts_match(db: Engine, world: Any, artifact: ModelArtifact, n: int) -> None:
    counts, expected = _stored_counts(db), _recount(db, world, artifact)
    assert set(counts) == set(expected) == {SCORE, *artifact.feature_names}
    for name, bins in expected.items():
        assert sum(counts[name]) == n, name
        assert {i: c for i, c in enumerate(counts[name]) if c} == dict(bins), name


def test_counts_equal_the_stored_decisions_and_a_redelivery_adds_nothing(
    db: Engine, world_and_model: tuple[Any, ModelArtifact]
) -> None:
    world, artifact = world_and_model
    pipeline = _pipeline(db, artifact)
    first = pipeline.prepare(_messages(world, 0, 400))
    assert isinstance(first.drift, Codes) and len(first.drift.codes) == len(first.rows) == 400
    assert pipeline.write(first).decided == 400
    _assert_counts_match(db, world, artifact, 400)

    # The same batch written again (a retry after a commit whose reply was lost): skipped.
    first.staged = None
    again = pipeline.write(first)
    assert (again.decided, again.skipped_replayed) == (0, 400)
    # Delivered again to a restarted consumer: duplicates, not decisions.
    redelivered = _pipeline(db, artifact).prepare(_messages(world, 0, 400))
    assert len(redelivered.duplicates) == 400 and not redelivered.rows
    _assert_counts_match(db, world, artifact, 400)

    # A batch whose first part was written by an earlier attempt: only the rest is counted.
    batch = pipeline.prepare(_messages(world, 400, 300))
    assert batch.drift is not None and len(batch.rows) == 300
    head = Codes(batch.drift.model_version, batch.drift.names, batch.drift.codes[:120])
    offsets = {(GROUP, TOPIC, 0): 520}
    writer = pipeline.writer
    writer.write_staged(BatchRequest(batch.rows[:120], [], [], offsets, [], drift=head))
    pipeline.release(batch)
    result = pipeline.write(batch)
    assert (result.decided, result.skipped_replayed) == (180, 120)
    _assert_counts_match(db, world, artifact, 700)


def test_a_model_without_a_reference_counts_nothing(
    db: Engine, world_and_model: tuple[Any, ModelArtifact]
) -> None:
    world, trained = world_and_model
    meta = {k: v for k, v in trained.metadata.items() if k != "drift_reference"}
    older = ModelArtifact(trained.estimator, trained.feature_names, meta)
    pipeline = _pipeline(db, older)
    batch = pipeline.prepare(_messages(world, 0, 50))
    assert batch.drift is None
    assert pipeline.write(batch).decided == 50
    assert _stored_counts(db) == {}
    assert np.isfinite([d.score for _, d in batch.decided]).all()


def test_rows_of_two_hours_are_counted_in_their_own_hour() -> None:
    """A writer given decisions of several hours (not a consumer batch) splits the counts."""
    from datetime import datetime

    from payscore.store.drift import increments

    codes = Codes("m1", ("score", "amount"), np.array([[0, 1], [1, 1], [2, 0], [0, 0]], np.uint8))
    t1, t2 = datetime(2030, 1, 1, 10, 59, 59), datetime(2030, 1, 1, 11, 0, 1)
    rows = [{"scored_at": t} for t in (t1, t2, t1, t2)]
    out = increments(codes, rows, np.array([0, 1, 2, 3]))
    got = {(r["hour"].hour, r["feature"]): [r[c] for c in BIN_COLUMNS[:3]] for r in out}
    assert got == {
        (10, "amount"): [1, 1, 0],
        (10, "score"): [1, 0, 1],
        (11, "amount"): [1, 1, 0],
        (11, "score"): [1, 1, 0],
    }
    assert [(r["hour"].hour, r["feature"]) for r in out] == sorted(got)  # one lock order
    only = increments(codes, rows, np.array([1]))
    assert {r["feature"]: r["bin_01"] for r in only} == {"score": 1, "amount": 1}


def test_sqlite_counts_once_too(tmp_path: Path) -> None:
    """The demo's database (SQLite) takes the same upsert: a batch written twice counts once."""
    from sqlalchemy import create_engine

    from payscore.store.schema import metadata
    from tests.store.rows import row

    engine = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    metadata.create_all(engine)
    writer = DecisionWriter(engine)
    codes = Codes("m1", ("score", "amount"), np.array([[0, 1], [2, 1]], np.uint8))
    batch = BatchRequest([row("a", 0), row("b", 1)], [], [], {(GROUP, TOPIC, 0): 2}, [], codes)
    assert [writer.write_staged(batch).decided for _ in range(2)] == [2, 0]
    later = Codes("m1", ("score", "amount"), np.array([[1, 1]], np.uint8))
    writer.write_staged(BatchRequest([row("c", 2)], [], [], {(GROUP, TOPIC, 0): 3}, [], later))
    counts = _stored_counts(engine)
    engine.dispose()
    assert (counts["score"][:3], counts["amount"][:3]) == ([1, 1, 1], [0, 3, 0])
