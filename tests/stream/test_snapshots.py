"""Feature-state snapshots: the plain format round-trips and refuses anything that does not add
up; a compaction builds on the previous snapshot; a restore plus the payments stored after it
is the state a full replay builds, for any partition set (a rebalance included); a missing,
corrupt or ahead-of-offsets snapshot falls back to the full replay."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, update

from payscore.bench.recovery import GROUP, PARTITIONS, TOPIC, seed
from payscore.config import Settings
from payscore.core.features import SNAPSHOT_VERSION, FeatureEngine
from payscore.store import snapshots as store
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import consumer_offsets, feature_snapshot_chunks, feature_snapshots
from payscore.stream import compactor
from payscore.stream.rebuild import FeatureState
from payscore.stream.snapshot_format import FORMAT_VERSION, MAGIC
from payscore.stream.snapshots import (
    CompactionJob,
    SnapshotError,
    SnapshotKeeper,
    decode,
    encode,
)

STORED, AFTER = 3_000, 600
ALL = set(range(PARTITIONS))


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'snap.db'}"))
    create_schema(engine)
    seed(engine, STORED, total=STORED + AFTER)
    yield engine
    engine.dispose()


def keeper_for(db: Engine, **kwargs) -> SnapshotKeeper:
    options = {"in_thread": True, "settle_s": 0.0, **kwargs}
    return SnapshotKeeper(db, GROUP, TOPIC, 1.0, 50_000_000, **options)


def state_for(db: Engine, owned: set[int]) -> FeatureState:
    return FeatureState(db, TOPIC, FeatureEngine, lambda: owned, keeper_for(db))


def full_replay(db: Engine, owned: set[int] = ALL) -> FeatureEngine:
    return FeatureState(db, TOPIC, FeatureEngine, lambda: owned).rebuild()


def compact_now(db: Engine) -> dict:
    """A compaction of everything stored, as a running consumer's keeper starts one."""
    engine = FeatureEngine()
    job = CompactionJob(
        GROUP, TOPIC, engine.velocity_windows, engine.label_delay_days, 50_000_000, 10**12
    )
    return compactor.compact(db, job)


def snapshot_then_more(db: Engine) -> None:
    """A snapshot of what is stored, then AFTER more payments are stored."""
    assert compact_now(db)["rows"] == STORED
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
        [f"next-{i}" for i in range(len(customers))],
        customers,
        [terminals[i % len(terminals)] for i in range(len(customers))],
        [12.5 + i for i in range(len(customers))],
        [t + i for i in range(len(customers))],
    )


def small_engine() -> FeatureEngine:
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
    return engine


def restored_snapshot(decoded) -> dict:
    return FeatureEngine.from_columns(decoded.columns).snapshot()


def test_format_round_trips_the_engine_state_and_the_partitions() -> None:
    engine = small_engine()
    parts = {"c1": 0, "c2": 3, "c\u00e9": 3}
    decoded = decode(encode(engine.columns(), parts))
    assert restored_snapshot(decoded) == engine.snapshot()
    assert decoded.partitions == parts
    empty = FeatureEngine()
    assert restored_snapshot(decode(encode(empty.columns(), {}))) == empty.snapshot()


def test_decode_keeps_only_the_given_partitions_customers_and_every_terminal() -> None:
    engine = small_engine()
    snap = engine.snapshot()
    decoded = decode(encode(engine.columns(), {"c1": 0, "c2": 3, "c\u00e9": 3}), keep={3})
    restored = restored_snapshot(decoded)
    assert restored["customers"] == {k: snap["customers"][k] for k in ("c2", "c\u00e9")}
    assert restored["terminals"] == snap["terminals"]  # c1's payments at them included
    assert restored["pending"] == snap["pending"]
    assert decoded.partitions == {"c2": 3, "c\u00e9": 3}


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-3],  # truncated
        lambda b: b + b"x",  # trailing bytes
        lambda b: b"NOT-A-SNAPSHOT" + b[14:],
        lambda b: b.replace(b'"format": %d' % FORMAT_VERSION, b'"format": 99'),  # another format
        lambda b: b.replace(b'"engine_version": %d' % SNAPSHOT_VERSION, b'"engine_version": 0'),
        lambda b: b[:23] + (6).to_bytes(4, "little") + b"[1, 2]" + b[27:],  # header not an object
        lambda b: b.replace(b'"sections": [["customer_keys", ', b'"sections": [["cust_keys", '),
    ],
)
def test_damaged_bytes_are_refused(damage) -> None:
    engine = FeatureEngine()
    engine.transform_columns(["a", "b"], ["c1", "c2"], ["t1", "t1"], [1.0, 2.0], [1e9, 1e9 + 5])
    data = encode(engine.columns(), {"c1": 0, "c2": 1})
    assert decode(data).partitions == {"c1": 0, "c2": 1}
    assert damage(data) != data  # each damage really changes the bytes
    with pytest.raises(SnapshotError):
        decode(damage(data))


def test_a_customer_reference_past_the_names_is_refused() -> None:
    engine = FeatureEngine()
    engine.transform_columns(["a"], ["c1"], ["t1"], [1.0], [1e9])
    data = bytearray(encode(engine.columns(), {"c1": 0}))
    at = len(MAGIC)
    size = int.from_bytes(data[at : at + 4], "little")
    header = json.loads(data[at + 4 : at + 4 + size])
    at += 4 + size
    for name, length, _ in header["sections"]:
        if name == "terminal_customer_refs":  # one payment, one name: its ref 0 becomes 7
            data[at : at + 4] = (7).to_bytes(4, "little")
        at += length
    with pytest.raises(SnapshotError):
        decode(bytes(data))


def test_a_nul_in_an_id_is_not_written() -> None:
    engine = FeatureEngine()
    engine.transform_columns(["a\x00b"], ["c1"], ["t1"], [1.0], [1e9])
    with pytest.raises(SnapshotError):
        encode(engine.columns(), {})


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


@pytest.mark.parametrize("mine", [{0, 2, 3}, {5}, {1, 4}])
def test_any_partition_set_restores_without_a_full_replay(db: Engine, mine: set[int]) -> None:
    """A rebalance hands a consumer partitions no snapshot was taken for alone: the snapshot
    of the whole topic still serves, with only those partitions' customers."""
    snapshot_then_more(db)
    restored_state = state_for(db, mine)
    restored = restored_state.rebuild()
    assert restored_state.rebuilt_rows == AFTER
    full = full_replay(db, mine)
    assert restored.snapshot() == full.snapshot()
    assert 0 < restored.customer_count < full_replay(db).customer_count


def test_a_compaction_builds_on_the_previous_snapshot(db: Engine) -> None:
    snapshot_then_more(db)
    assert compact_now(db)["rows"] == AFTER  # only the payments stored since
    on_top = state_for(db, ALL).rebuild()
    with db.begin() as conn:  # the same state compacted from scratch
        conn.execute(feature_snapshot_chunks.delete())
        conn.execute(feature_snapshots.delete())
    assert compact_now(db)["rows"] == STORED + AFTER
    afresh = state_for(db, ALL).rebuild()
    assert on_top.snapshot() == afresh.snapshot() == full_replay(db).snapshot()


def test_a_compaction_with_nothing_new_writes_nothing(db: Engine) -> None:
    compact_now(db)
    assert compact_now(db) is None


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


def test_no_snapshot_falls_back(db: Engine, caplog) -> None:
    seed(db, STORED + AFTER, start=STORED, total=STORED + AFTER)
    _falls_back(db, {0, 1, 2}, caplog)


def test_saving_replaces_the_older_snapshot(db: Engine) -> None:
    compact_now(db)
    seed(db, STORED + AFTER, start=STORED, total=STORED + AFTER)
    compact_now(db)
    with db.connect() as conn:
        ids = {r[0] for r in conn.execute(select(feature_snapshot_chunks.c.snapshot_id))}
        rows = conn.execute(select(func.count()).select_from(feature_snapshots)).scalar()
    assert len(ids) == 1 and rows == 1
    newest = store.load_newest(db, GROUP, TOPIC, 50_000_000)
    assert newest is not None and newest.id in ids


def test_oversized_snapshot_is_refused_on_read(db: Engine) -> None:
    compact_now(db)
    with pytest.raises(ValueError):
        store.load_newest(db, GROUP, TOPIC, 100)


def test_take_covers_the_row_id_it_read_and_the_compaction_waits_before_reading(
    db: Engine,
) -> None:
    """A writer's transaction open when the newest id is read may still commit below it: the
    compaction waits ``settle_s`` and covers only up to that id, not rows stored since."""
    keeper = keeper_for(db, settle_s=0.5)
    read = store.newest_row_id(db)
    keeper.take(FeatureEngine(), ALL, 0, 0)
    seed(db, STORED + AFTER, start=STORED, total=STORED + AFTER)  # during the wait
    keeper.wait()
    stored = store.load_newest(db, GROUP, TOPIC, 50_000_000)
    assert stored is not None and stored.covers["max_id"] == read < store.newest_row_id(db)
    assert state_for(db, ALL).rebuild().snapshot() == full_replay(db).snapshot()


def test_take_compacts_in_a_process_of_its_own(db: Engine, caplog) -> None:
    keeper = keeper_for(db, in_thread=False)
    with caplog.at_level(logging.INFO, logger="payscore.stream.snapshots"):
        keeper.take(FeatureEngine(), ALL, 0, 0)
        keeper.wait()
    assert "written in the background" in caplog.text, caplog.text
    restored = state_for(db, ALL).rebuild()
    assert restored.snapshot() == full_replay(db).snapshot()


def test_a_compaction_does_not_build_on_a_snapshot_ahead_of_the_offsets(db: Engine) -> None:
    snapshot_then_more(db)
    with db.begin() as conn:  # the database went back (a restored backup, say)
        conn.execute(
            update(consumer_offsets).values(next_offset=consumer_offsets.c.next_offset - 10**6)
        )
    assert compact_now(db)["rows"] == STORED + AFTER  # afresh, from the stored history


def test_only_the_owner_of_partition_zero_compacts(db: Engine) -> None:
    """One snapshot serves the whole group: the other members do not build it again."""
    keeper = keeper_for(db)
    keeper.take(FeatureEngine(), {1, 2}, 0, 0)
    keeper.wait()
    assert store.load_newest(db, GROUP, TOPIC, 50_000_000) is None
    keeper.take(FeatureEngine(), {0, 2}, 0, 0)
    keeper.wait()
    assert store.load_newest(db, GROUP, TOPIC, 50_000_000) is not None


def test_the_newest_event_time_is_the_stored_maximum(db: Engine) -> None:
    """``state.latest_event_time`` reads the index's newest end: the same as MAX(event_time)."""
    from sqlalchemy import func, select

    from payscore.store import state
    from payscore.store.schema import scored_transactions

    c = scored_transactions.c
    with db.connect() as conn:
        newest = conn.execute(select(func.max(c.event_time)).where(c.kafka_topic == TOPIC))
        stored_max = newest.scalar()
    assert state.latest_event_time(db, TOPIC) == stored_max is not None
    assert state.latest_event_time(db, "no-such-topic") is None
