"""The consumer's daily refresh expires quiet customers and terminals: under churn (cards
that pay once) the feature state levels off instead of growing, and no score changes."""

from __future__ import annotations

import logging
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine

from payscore.core.features import DAY, FeatureEngine
from payscore.store.schema import metadata, scored_transactions
from payscore.stream.rebuild import EXPIRY_LATENESS, FeatureState

T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC
TOPIC = "payments"
Batch = tuple[list[str], list[str], list[str], list[float], list[float]]


def churn(days: int, per_day: int, seed: int = 7) -> Iterator[tuple[int, Batch]]:
    """One day's payments at a time, in arrival order: ``per_day`` cards paying once, a few
    regulars, cards coming back after 10 days (inside the 30-day window) and after 45 (past
    it), one-off terminals beside long-lived ones; arrival up to 6 hours out of event order."""
    rng = random.Random(seed)
    for day in range(days):
        rows = []
        for i in range(per_day):
            rows.append((f"once-{day}-{i}", f"term-{rng.randrange(60)}"))
        for i in range(5):
            rows.append((f"regular-{i}", f"term-{rng.randrange(60)}"))
            rows.append((f"back10-{day // 10}-{i}", f"term-{rng.randrange(60)}"))
            rows.append((f"back45-{day % 45}-{i}", f"term-{rng.randrange(60)}"))
        for i in range(per_day // 10):
            rows.append((f"once-{day}-{i}", f"one-off-{day}-{i}"))
        times = sorted(T0 + day * DAY + rng.uniform(0, DAY) for _ in rows)
        # Arrival order: each payment up to 6 hours late against the ones before it.
        times = [t - rng.uniform(0, 6 * 3600) for t in times]
        txids = [f"tx-{day}-{n}" for n in range(len(rows))]
        amounts = [round(rng.uniform(1, 300), 2) for _ in rows]
        yield day, (txids, [c for c, _ in rows], [t for _, t in rows], amounts, times)


def label_some(engines: list[FeatureEngine], day: int, batch: Batch, rng: random.Random) -> None:
    """Every 20th payment is fraud, known two days after it (labels arrive before their day)."""
    for txid, t in zip(batch[0][::20], batch[4][::20], strict=True):
        if rng.random() < 0.5:
            for engine in engines:
                engine.add_label(txid, True, t + 2 * DAY)


def test_expiry_never_changes_a_score() -> None:
    kept, expired = FeatureEngine(), FeatureEngine()
    state = FeatureState(None, TOPIC, FeatureEngine, set)  # type: ignore[arg-type]
    rng = random.Random(3)
    returned_after_window: list[tuple[int, list[float]]] = []
    fresh = FeatureEngine()
    customer_columns = [i for i, n in enumerate(fresh.feature_names) if n.startswith("customer")]
    dropped = 0
    for day, batch in churn(days=120, per_day=40):
        label_some([kept, expired], day, batch, rng)
        dropped += state.expire_quiet(expired)
        a = kept.transform_columns(*batch)
        b = expired.transform_columns(*batch)
        assert np.array_equal(a, b), f"day {day}: expiry changed a feature"
        if day >= 45:  # back45 cards paid 45 days before: expired, they start afresh
            for row, cid in enumerate(batch[1]):
                if cid.startswith("back45-"):
                    returned_after_window.append((row, b[row].tolist()))
                    alone = fresh.transform_columns(
                        [f"fresh-{day}-{row}"],
                        [f"fresh-{cid}-{day}"],
                        ["nowhere"],
                        [batch[3][row]],
                        [batch[4][row]],
                    )[0]
                    assert [b[row][i] for i in customer_columns] == [
                        alone[i] for i in customer_columns
                    ], f"day {day}: {cid} back after the window"
    # The test means something only if the expiry did drop state the other engine holds.
    assert dropped > 0 and returned_after_window
    assert expired.customer_count < kept.customer_count / 2
    assert expired.held_entries < kept.held_entries


def test_expiry_keeps_what_a_late_payment_still_reads() -> None:
    """A payment arriving up to EXPIRY_LATENESS late sees the same history as without it."""
    lateness = EXPIRY_LATENESS.total_seconds()
    kept, expired = FeatureEngine(), FeatureEngine()
    state = FeatureState(None, TOPIC, FeatureEngine, set)  # type: ignore[arg-type]
    for engine in (kept, expired):
        engine.transform_columns(["a"], ["card"], ["term"], [10.0], [T0])
        engine.transform_columns(["b"], ["other"], ["term2"], [10.0], [T0 + 31 * DAY])
    state.expire_quiet(expired)
    late = (["late"], ["card"], ["term"], [20.0], [T0 + 31 * DAY - lateness + 1])
    assert np.array_equal(kept.transform_columns(*late), expired.transform_columns(*late))


@pytest.fixture
def refreshing_state(tmp_path: Path) -> Iterator[FeatureState]:
    """The consumer's FeatureState on an empty SQLite database: no labels, no other rows."""
    db = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    metadata.create_all(db)
    yield FeatureState(db, TOPIC, FeatureEngine, set)
    db.dispose()


def _run(days: int, per_day: int, expire: Any, traced: bool) -> list[tuple[int, int, int, int]]:
    """(customers, terminals, held entries, traced bytes or 0) at the end of each day;
    ``expire(engine, batch)`` runs before each day's batch, as the consumer's refresh does."""
    engine = FeatureEngine()
    sizes = []
    if traced:  # tracing every allocation makes the run 20 times slower: only when asked
        tracemalloc.start()
    try:
        for _day, batch in churn(days, per_day):
            expire(engine, batch)
            engine.transform_columns(*batch)
            current = tracemalloc.get_traced_memory()[0] if traced else 0
            sizes.append(
                (engine.customer_count, engine.terminal_count, engine.held_entries, current)
            )
    finally:
        tracemalloc.stop()
    return sizes


def _peak(sizes: list[tuple[int, int, int, int]], days: range, what: int) -> int:
    return max(sizes[d][what] for d in days)


# After the longest window (30 days for cards, 44 for terminals) and the lateness, the state
# is as large as it gets: from day 120 on it holds no more than from day 50 to 90.
SETTLED, LATER = range(50, 90), range(120, 160)


def test_the_daily_refresh_levels_the_state_off_under_churn(
    refreshing_state: FeatureState,
) -> None:
    days, per_day = 160, 100

    def refresh(engine: FeatureEngine, batch: Batch) -> None:
        records = [SimpleNamespace(topic=TOPIC, timestamp=t * 1000) for t in batch[4]]
        refreshing_state.maybe_refresh(engine, records)

    refreshed = _run(days, per_day, refresh, traced=False)
    for what in range(3):  # cards, terminals, entries
        settled, later = _peak(refreshed, SETTLED, what), _peak(refreshed, LATER, what)
        assert later <= settled * 1.02, (what, settled, later)
    customers, terminals, held, _ = refreshed[-1]
    assert customers <= 33 * (per_day + 15)
    assert terminals <= 60 + 48 * (per_day // 10)  # 37 days' windows + 7 days' lateness
    # Without it every card that ever paid is still held: the state grows with the stream.
    unbounded = _run(days, per_day, lambda engine, batch: None, traced=False)
    assert unbounded[-1][0] >= days * per_day > 4 * customers
    assert unbounded[-1][2] > 2 * held


def test_the_engines_memory_levels_off_under_churn(caplog: pytest.LogCaptureFixture) -> None:
    """The bytes the engine holds, traced: flat once the windows are full."""
    # Only the engine's bytes: the daily log line, when an earlier test has set the level to
    # INFO, would be kept by pytest's capture and be counted too.
    caplog.set_level(logging.WARNING, logger="payscore.stream.rebuild")
    state = FeatureState(None, TOPIC, FeatureEngine, set)  # type: ignore[arg-type]
    sizes = _run(160, 50, lambda engine, batch: state.expire_quiet(engine), traced=True)
    settled, later = _peak(sizes, SETTLED, 3), _peak(sizes, LATER, 3)
    # The ids get longer ("tx-99-" to "tx-100-"): a little slack, far below the growth.
    assert later <= settled * 1.03, (settled, later)
    unbounded = _run(160, 50, lambda engine, batch: None, traced=True)
    assert _peak(unbounded, LATER, 3) > 1.5 * settled


def test_the_daily_refresh_reads_stream_labels_stored_after_an_analysts_verdict(tmp_path):
    """An analyst's verdict is known at a wall-clock time, a stream label at an event time that
    may be years older: the refresh must read both, whatever their known_at (it kept its place
    by the newest known_at, and skipped every later stream label older than the verdict)."""
    from datetime import datetime

    from payscore.store import labels

    db = create_engine(f"sqlite:///{tmp_path / 'labels.db'}")
    metadata.create_all(db)
    engine = FeatureEngine()
    state = FeatureState(db, TOPIC, FeatureEngine, set)
    _paid(engine, T0)
    state.maybe_refresh(engine)  # the first batch sets the day
    from payscore.store.schema import scored_transactions
    from tests.store.rows import row

    with db.begin() as conn:
        conn.execute(scored_transactions.insert(), [row("tx-analyst", 1)])
    labels.record_analyst_label(db, "tx-analyst", True, "erin", now=datetime(2026, 12, 1))
    with db.begin() as conn:
        labels.record_stream_labels(
            conn,
            "sqlite",
            [{"transaction_id": "tx-stream", "is_fraud": True, "known_at": datetime(2024, 1, 3)}],
        )
    _paid(engine, T0 + DAY)
    state.maybe_refresh(engine)
    assert set(engine._pending) == {"tx-analyst", "tx-stream"}
    with db.begin() as conn:  # a later stream label, older than the verdict again
        labels.record_stream_labels(
            conn,
            "sqlite",
            [{"transaction_id": "tx-late", "is_fraud": True, "known_at": datetime(2024, 1, 4)}],
        )
    _paid(engine, T0 + 2 * DAY)
    state.maybe_refresh(engine)
    assert "tx-late" in engine._pending


def _paid(engine: FeatureEngine, t: float) -> None:
    """One payment at event time ``t``: the refresh's day is the engine's newest event time."""
    engine.transform_columns([f"tx-{t}"], ["card"], ["term"], [1.0], [t])


def test_the_refresh_follows_the_payments_event_time_not_the_records_timestamps(tmp_path):
    """A backlog or a replay is read within minutes of wall-clock time: other consumers'
    stored payments must still be read as the payments' own days pass."""
    from datetime import datetime

    from tests.store.rows import row

    db = create_engine(f"sqlite:///{tmp_path / 'others.db'}")
    metadata.create_all(db)
    engine = FeatureEngine()
    state = FeatureState(db, TOPIC, FeatureEngine, lambda: {0})
    now = SimpleNamespace(topic=TOPIC, timestamp=T0 * 1000)  # every record: the same wall day
    _paid(engine, T0)
    state.maybe_refresh(engine, [now])
    with db.begin() as conn:
        other = row("tx-other", 1, partition=1, when=datetime(2024, 1, 1, 6))
        conn.execute(scored_transactions.insert(), [other])
    state.maybe_refresh(engine, [now])
    assert "tx-other" not in engine._tx_terminal  # the same event-time day: not yet
    _paid(engine, T0 + DAY)
    state.maybe_refresh(engine, [now])
    assert "tx-other" in engine._tx_terminal


def test_a_batch_that_commits_after_a_newer_one_is_still_read(tmp_path):
    """Row ids are given out at insert, not at commit: another consumer's batch may commit with
    ids below rows already read. The next daily read reads it; rows held are not added twice."""
    from datetime import datetime

    from tests.store.rows import row

    db = create_engine(f"sqlite:///{tmp_path / 'late.db'}")
    metadata.create_all(db)
    engine = FeatureEngine()
    state = FeatureState(db, TOPIC, FeatureEngine, lambda: {0})
    _paid(engine, T0)
    state.maybe_refresh(engine)

    def other(tx: str, row_id: int) -> dict[str, Any]:
        return {**row(tx, row_id, partition=1, when=datetime(2024, 1, 1, 6)), "id": row_id}

    with db.begin() as conn:
        conn.execute(scored_transactions.insert(), [other("tx-newer", 50)])
    _paid(engine, T0 + DAY)
    state.maybe_refresh(engine)
    assert engine.holds_payment("tx-newer")
    with db.begin() as conn:  # committed now, with an id below the one read
        conn.execute(scored_transactions.insert(), [other("tx-late", 40)])
    _paid(engine, T0 + 2 * DAY)
    state.maybe_refresh(engine)
    assert engine.holds_payment("tx-late")
    assert sorted(engine._terminals["t1"].txids) == ["tx-late", "tx-newer"]  # each read once


def _ratio_world(db_url: str) -> tuple[Any, FeatureEngine, list[float]]:
    """On MariaDB: card c1 (partition 0) pays 3.00 three days running, then a fraud of 50.00
    at terminal t1 on day 10 (ratio 50/3, a DOUBLE that must come back to the bit); card c9
    (partition 1) pays on days 47 and 48, so a read of the stored history (from 44 days before
    the newest payment) finds the fraud but not c1's habit. Returns the database, the owner's
    engine and the fraud's probe row as the owner computes it."""
    from datetime import datetime, timezone

    from tests.store.rows import row

    db = create_engine(db_url)
    owner = FeatureEngine()
    c1 = [("h0", 0, "home", 3.0), ("h1", 1, "home", 3.0), ("h2", 2, "home", 3.0)]
    c1.append(("fraud", 10, "t1", 50.0))
    X = owner.transform_columns(
        [tx for tx, *_ in c1],
        ["c1"] * len(c1),
        [term for _, _, term, _ in c1],
        [a for *_, a in c1],
        [T0 + d * DAY for _, d, _, _ in c1],
    )
    ratios = X[:, owner.feature_names.index("customer_amount_ratio_median_30day")].tolist()
    assert ratios[-1] == 50 / 3
    rows = []
    stored = [(*p, "c1", 0, r) for p, r in zip(c1, ratios, strict=True)]
    stored += [("o1", 47, "t9", 8.0, "c9", 1, 1.0), ("o2", 48, "t9", 8.0, "c9", 1, 1.0)]
    for i, (tx, day, term, amount, card, part, ratio) in enumerate(stored):
        when = datetime.fromtimestamp(T0 + day * DAY, timezone.utc).replace(tzinfo=None)
        r = row(tx, i, partition=part, when=when)
        rows.append(r | {"customer_id": card, "terminal_id": term, "amount": amount})
        rows[-1]["amount_ratio"] = ratio
    with db.begin() as conn:
        conn.execute(scored_transactions.insert(), rows)
    return db, owner, _probe(owner)


def _probe(engine: FeatureEngine) -> list[float]:
    """A new card's payment at t1 on day 45, after the fraud's label (known on day 11)."""
    engine.add_label("fraud", True, T0 + 11 * DAY)
    return engine.transform_columns(["probe"], ["x"], ["t1"], [5.0], [T0 + 45 * DAY])[0].tolist()


def test_other_consumers_payments_keep_the_ratio_their_own_consumer_stored(db_url) -> None:
    """A consumer that owns partition 1 learns card c1's fraud from the database, without the
    card's habit, at a rebuild and in the daily read: its terminal still reads the ratio c1's
    own consumer stored, so the probe's features equal the owner's. A row stored without the
    ratio (an older payscore) falls back to the ratio computed here."""
    from sqlalchemy import update

    db, owner, want = _ratio_world(db_url)
    at = owner.feature_names.index("terminal_last_fraud_ratio")
    assert want[at] == 50 / 3
    try:
        rebuilt = FeatureState(db, TOPIC, FeatureEngine, lambda: {1}).rebuild()
        assert not rebuilt.holds_payment("h0") and rebuilt.holds_payment("fraud")
        assert _probe(rebuilt) == want

        engine = FeatureEngine()  # started before the rows: its daily read finds them
        state = FeatureState(db, TOPIC, FeatureEngine, lambda: {1})
        for day in (47, 48):
            engine.transform_columns([f"own{day}"], ["c9"], ["t9"], [8.0], [T0 + day * DAY])
            state.maybe_refresh(engine)
        assert engine.holds_payment("fraud") and not engine.holds_payment("h0")
        assert _probe(engine) == want

        with db.begin() as conn:
            conn.execute(update(scored_transactions).values(amount_ratio=None))
        older = FeatureState(db, TOPIC, FeatureEngine, lambda: {1}).rebuild()
        assert _probe(older)[at] == 1.0  # no habit in reach: the computed ratio
    finally:
        db.dispose()
