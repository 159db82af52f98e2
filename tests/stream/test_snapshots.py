"""Feature-state snapshots: the plain format round-trips and refuses anything that does not add
up; a restore plus the payments stored after it is the state a full replay builds; a missing,
corrupt, ahead-of-offsets or other-partitions snapshot falls back to the full replay."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select, update

from payscore.bench.recovery import GROUP, PARTITIONS, TOPIC, seed
from payscore.config import Settings
from payscore.core.features import FeatureEngine
from payscore.store import snapshots as store
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import consumer_offsets, feature_snapshot_chunks
from payscore.stream.rebuild import FeatureState
from payscore.stream.snapshots import SnapshotError, SnapshotKeeper, decode, encode

STORED, AFTER = 3_000, 600
ALL = set(range(PARTITIONS))


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'snap.db'}"))
    create_schema(engine)
    seed(engine, STORED, total=STORED + AFTER)
    yield engine
    engine.dispose()


def state_for(db: Engine, owned: set[int], interval: float = 1.0) -> FeatureState:
    keeper = SnapshotKeeper(db, GROUP, TOPIC, interval, 50_000_000, lambda: True)
    return FeatureState(db, TOPIC, FeatureEngine, lambda: owned, keeper)


def full_replay(db: Engine, owned: set[int] = ALL) -> FeatureEngine:
    return FeatureState(db, TOPIC, FeatureEngine, lambda: owned).rebuild()


def snapshot_then_more(db: Engine, owned: set[int] = ALL) -> None:
    """A consumer rebuilds, snapshots its state, and AFTER more payments are stored."""
    state = state_for(db, owned)
    state.maybe_snapshot(state.rebuild(), now=True)
    state.snapshots.wait()  # saved in a thread
    seed(db, STORED + AFTER, start=STORED, total=STORED + AFTER)


def next_features(engine: FeatureEngine) -> np.ndarray:
    """Features of new payments by stored customers at stored terminals (reads the state)."""
    snap = engine.snapshot()
    customers = sorted(snap["customers"])[:50]
    terminals = sorted(snap["terminals"])[:50]
    newest = engine.newest_event_time
    assert newest is not None
    t = newest.timestamp() + 60
    return engine.transform_columns(
        [f"next-{i}" for i in range(50)],
        customers,
        [terminals[i % len(terminals)] for i in range(50)],
        [12.5 + i for i in range(50)],
        [t + i for i in range(50)],
    )


def test_format_round_trips_the_engine_state() -> None:
    engine = FeatureEngine()
    engine.add_label("tx-later", True, 1_700_100_000.0)  # pending: not seen yet
    engine.transform_columns(
        ["a", "b", "c", "d"],
        ["c1", "c2", "c1", "c\u00e9"],
        ["t1", "t1", "t2", "t2"],
        [10.0, 2000.5, 3.25, 7.0],
        [1_700_000_000.0, 1_700_000_060.0, 1_700_000_100.0, 1_700_000_200.0],
    )
    engine.add_label("b", True, 1_700_050_000.0)
    snap = engine.snapshot()
    assert decode(encode(snap)) == snap
    empty = FeatureEngine().snapshot()
    assert decode(encode(empty)) == empty


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-3],  # truncated
        lambda b: b + b"x",  # trailing bytes
        lambda b: b"NOT-A-SNAPSHOT" + b[14:],
        lambda b: b.replace(b'"format": 1', b'"format": 9'),  # another format version
        lambda b: b.replace(b'"engine_version": 1', b'"engine_version": 0'),
        lambda b: b[:23] + (6).to_bytes(4, "little") + b"[1, 2]" + b[27:],  # header not an object
        lambda b: b.replace(b'"sections": [["customer_keys", ', b'"sections": [["cust_keys", '),
    ],
)
def test_damaged_bytes_are_refused(damage) -> None:
    engine = FeatureEngine()
    engine.transform_columns(["a", "b"], ["c1", "c2"], ["t1", "t1"], [1.0, 2.0], [1e9, 1e9 + 5])
    data = encode(engine.snapshot())
    with pytest.raises(SnapshotError):
        decode(damage(data))


def test_a_nul_in_an_id_is_not_written() -> None:
    engine = FeatureEngine()
    engine.transform_columns(["a\x00b"], ["c1"], ["t1"], [1.0], [1e9])
    with pytest.raises(SnapshotError):
        encode(engine.snapshot())


def test_restore_and_replay_the_rest_equals_the_full_replay(db: Engine, caplog) -> None:
    snapshot_then_more(db)
    restored_state = state_for(db, ALL)
    with caplog.at_level(logging.INFO, logger="payscore.stream.rebuild"):
        restored = restored_state.rebuild()
    assert "restored feature state from snapshot" in caplog.text
    assert restored_state.rebuilt_rows == AFTER  # only what came after the snapshot
    full = full_replay(db)
    assert restored.snapshot() == full.snapshot()
    assert np.array_equal(next_features(restored), next_features(full))


def test_restore_of_some_partitions_keeps_other_partitions_terminal_traffic(db: Engine) -> None:
    mine = {0, 2, 3}
    snapshot_then_more(db, mine)
    restored_state = state_for(db, mine)
    restored = restored_state.rebuild()
    assert restored_state.rebuilt_rows < STORED  # not a full replay
    full = full_replay(db, mine)
    assert restored.snapshot() == full.snapshot()


def _falls_back(db: Engine, owned: set[int], caplog) -> None:
    state = state_for(db, owned)
    with caplog.at_level(logging.INFO, logger="payscore.stream.rebuild"):
        engine = state.rebuild()
    assert "feature snapshot not used" in caplog.text
    assert "restored feature state" not in caplog.text
    assert state.rebuilt_rows == STORED + AFTER  # the whole history, as before snapshots
    assert engine.snapshot() == full_replay(db, owned).snapshot()


def test_corrupt_snapshot_falls_back_to_the_full_replay(db: Engine, caplog) -> None:
    snapshot_then_more(db)
    with db.begin() as conn:
        conn.execute(update(feature_snapshot_chunks).values(data=b"\x00" * 64))
    _falls_back(db, ALL, caplog)


def test_snapshot_ahead_of_the_stored_offsets_is_not_used(db: Engine, caplog) -> None:
    """A snapshot must never cover decisions the database does not hold."""
    snapshot_then_more(db)
    with db.begin() as conn:
        conn.execute(
            update(consumer_offsets).values(next_offset=consumer_offsets.c.next_offset - 10**6)
        )
    _falls_back(db, ALL, caplog)


def test_no_snapshot_of_these_partitions_falls_back(db: Engine, caplog) -> None:
    snapshot_then_more(db, {0, 1})
    _falls_back(db, {0, 1, 2}, caplog)


def test_saving_replaces_the_older_snapshot_of_the_same_partitions(db: Engine) -> None:
    state = state_for(db, ALL)
    engine = state.rebuild()
    state.maybe_snapshot(engine, now=True)
    state.snapshots.wait()
    state.maybe_snapshot(engine, now=True)
    state.snapshots.wait()
    with db.connect() as conn:
        ids = {r[0] for r in conn.execute(select(feature_snapshot_chunks.c.snapshot_id))}
    assert len(ids) == 1
    newest = store.load_newest(db, GROUP, TOPIC, ALL, 50_000_000)
    assert newest is not None and newest.id in ids


def test_oversized_snapshot_is_refused_on_read(db: Engine) -> None:
    state = state_for(db, ALL)
    state.maybe_snapshot(state.rebuild(), now=True)
    state.snapshots.wait()
    with pytest.raises(ValueError):
        store.load_newest(db, GROUP, TOPIC, ALL, 100)


def test_a_new_snapshot_drops_stale_ones_of_overlapping_partitions(db: Engine) -> None:
    for owned in ({0, 1}, {2, 3}, {1, 2}):  # the last takes partitions of both others
        state = state_for(db, owned)
        state.maybe_snapshot(state.rebuild(), now=True)
        state.snapshots.wait()
    assert store.load_newest(db, GROUP, TOPIC, {1, 2}, 50_000_000) is not None
    assert store.load_newest(db, GROUP, TOPIC, {0, 1}, 50_000_000) is None
    assert store.load_newest(db, GROUP, TOPIC, {2, 3}, 50_000_000) is None
