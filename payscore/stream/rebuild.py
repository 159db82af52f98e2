"""The consumer's feature state: rebuilt from the database on assignment, refreshed daily.

Split from ``consumer.py`` so the poll loop and the state catch-up read separately; the
database, not Kafka, is the source of the history a fresh ``FeatureEngine`` replays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine

from payscore.core.features import FeatureEngine
from payscore.errors import ServiceUnavailable
from payscore.store import state
from payscore.stream.snapshots import SnapshotError, SnapshotKeeper

log = logging.getLogger(__name__)
DAY_S = 86_400.0
#: How late, in event time, a payment may arrive and still be scored with all its history: the
#: daily expiry keeps whatever the newest payment minus this could still read.
EXPIRY_LATENESS = timedelta(days=1)
#: Row ids the daily read of other consumers' payments reads again below its cursor. Ids are
#: given out when a batch is inserted, not when it commits: a batch that commits after a newer
#: one was read has ids below the cursor. Rows already held are skipped, so a re-read costs
#: only the database read. 20,000 ids is 40 batches of 500 committed meanwhile by the others.
REREAD_IDS = 20_000


class FeatureState:
    """Where a consumer's feature state stands: the event-time day, labels and others' rows read."""

    def __init__(
        self,
        db: Engine,
        topic: str,
        new_engine: Callable[[], FeatureEngine],
        owned_partitions: Callable[[], set[int]],
        snapshots: SnapshotKeeper | None = None,
    ) -> None:
        self.db = db
        self.topic = topic
        self.new_engine = new_engine
        self._owned_partitions = owned_partitions
        self._state_day: float | None = None  # event-time day of the last state refresh
        self._others_cursor = 0  # scored_transactions.id read for other consumers' payments
        self._label_cursor = 0  # label_events.id read so far (see state.labels_after)
        self._expired_day: float | None = None  # event-time day of the last expiry
        self.rebuilt_rows = 0  # stored payments the last rebuild replayed (a metric)
        self.snapshots = snapshots  # see stream/snapshots.py; None: always the full replay

    @classmethod
    def for_consumer(
        cls, owner: Any, db: Engine, new_engine: Callable[[], FeatureEngine]
    ) -> FeatureState:
        """A consumer's feature state, with snapshots as its settings say. The keeper drains
        ``owner``'s writer thread before each snapshot (so it covers committed batches only)."""
        settings = owner.settings

        def drain() -> bool:
            writer = owner._writer  # the consumer's BatchWriterThread, made in run()
            return writer is not None and bool(writer.drain())

        keeper = SnapshotKeeper(
            db,
            owner.group,
            owner.topic,
            settings.snapshot_interval_seconds,
            settings.snapshot_max_bytes,
            drain,
        )
        return cls(db, owner.topic, new_engine, owner._owned_partitions, keeper)

    def rebuild(self) -> FeatureEngine:
        """Fresh engine from the database: every stored payment of the last 37 days of event
        time (all partitions, for terminal state), then forget customers we do not own."""
        started = time.monotonic()
        engine = self.new_engine()
        latest = state.latest_event_time(self.db, self.topic)
        replayed = 0
        restored = self._restore(engine, latest) if latest is not None else None
        if restored is not None:
            engine, replayed = restored
        elif latest is not None:
            since = _history_start(latest, engine)
            cursor = state.label_cursor(self.db)  # first: a label stored meanwhile is re-read
            engine.add_labels(state.load_labels(self.db, known_after=since))
            self._label_cursor = cursor
            history = state.load_history(self.db, self.topic, since)
            _replay(engine, history)
            owned = self._owned_partitions()
            pairs = zip(history.customer_ids, history.partitions, strict=True)
            mine = {c for c, p in pairs if p in owned}
            engine.forget_customers(lambda c: c in mine)
            self._others_cursor = history.last_id
            self._state_day = latest.replace(tzinfo=timezone.utc).timestamp() // DAY_S
            replayed = len(history)
        self.rebuilt_rows = replayed
        log.info(
            "rebuilt feature state from %d stored payments in %.1f s",
            replayed,
            time.monotonic() - started,
        )
        return engine

    def _restore(self, fresh: FeatureEngine, latest: datetime) -> tuple[FeatureEngine, int] | None:
        """The newest usable snapshot of the owned partitions plus the stored payments after
        it (ours after ``max_id``, others' after their cursor), or None: full replay."""
        keeper = self.snapshots
        if keeper is None or not keeper.enabled:
            return None
        owned = self._owned_partitions()
        try:
            restored = keeper.restore(owned, fresh)
        except SnapshotError as e:
            log.info("feature snapshot not used (%s): replaying the stored history", e)
            return None
        engine, covers = restored.engine, restored.covers
        labels, label_cursor = state.labels_after(self.db, covers.label_cursor)
        engine.add_labels(labels)
        since = _history_start(latest, engine)
        ours = state.load_history(
            self.db, self.topic, since, partitions=owned, after_id=covers.max_id
        )
        theirs = state.load_history(
            self.db, self.topic, since, exclude_partitions=owned, after_id=covers.others_cursor
        )
        _replay(engine, _merged(ours, theirs))
        others = set(theirs.customer_ids)
        engine.forget_customers(lambda c: c not in others)
        self._label_cursor = label_cursor
        self._others_cursor = max(covers.others_cursor, theirs.last_id)
        self._state_day = latest.replace(tzinfo=timezone.utc).timestamp() // DAY_S
        log.info(
            "restored feature state from snapshot %d (%d customers, %d terminals), then %d "
            "stored payments after it",
            restored.snapshot_id,
            engine.customer_count,
            engine.terminal_count,
            len(ours) + len(theirs),
        )
        return engine, len(ours) + len(theirs)

    def maybe_snapshot(self, engine: FeatureEngine, *, now: bool = False) -> None:
        """At a batch boundary, at most every ``snapshot_interval_seconds`` (or ``now``): save
        the state with what it covers (stream/snapshots.py). A database error skips it."""
        keeper = self.snapshots
        if keeper is None or not (now or keeper.due()):
            return
        try:
            self._others_cursor = keeper.take(
                engine, self._owned_partitions(), self._label_cursor, self._others_cursor
            )
        except ServiceUnavailable as e:
            log.warning("feature snapshot skipped: %s", e)

    def maybe_refresh(self, engine: FeatureEngine, records: Sequence[Any] = ()) -> None:
        """Once per day of the payments' event time (the newest the engine has seen, not the
        records' timestamps, which a replay or a backlog does not advance): new labels and
        other consumers' payments (terminals); and customers and terminals gone quiet are
        dropped (``expire_quiet``). First, when due, a snapshot of the state as it stands
        (``maybe_snapshot``). ``records`` is not read: the engine's own clock decides.

        Terminal features read payments at least the label delay (7 days) old, so a payment's
        features are the same with one consumer or several as long as no partition's stored
        payments are more than the delay less this day behind another's (docs/pipeline.md)."""
        del records
        self.maybe_snapshot(engine)
        self.expire_quiet(engine)
        newest_time = engine.newest_event_time
        if newest_time is None:
            return
        newest = newest_time.timestamp()
        day = newest // DAY_S
        if self._state_day is None:
            self._state_day = day
            return
        if day <= self._state_day:
            return
        self._state_day = day
        try:
            labels, cursor = state.labels_after(self.db, self._label_cursor)
            engine.add_labels(labels)
            self._label_cursor = cursor
            owned = self._owned_partitions()
            since = _history_start(newest_time.replace(tzinfo=None), engine)
            others = state.load_history(
                self.db,
                self.topic,
                since,
                exclude_partitions=owned,
                after_id=max(0, self._others_cursor - REREAD_IDS),
            )
            new = [i for i, tx in enumerate(others.transaction_ids) if not engine.holds_payment(tx)]
            if new:
                engine.transform_columns(
                    [others.transaction_ids[i] for i in new],
                    [others.customer_ids[i] for i in new],
                    [others.terminal_ids[i] for i in new],
                    [others.amounts[i] for i in new],
                    [others.times[i] for i in new],
                    [others.ratios[i] for i in new],
                )
                theirs = {others.customer_ids[i] for i in new}
                engine.forget_customers(lambda c: c not in theirs)
            if len(others):
                self._others_cursor = max(self._others_cursor, others.last_id)
        except ServiceUnavailable as e:
            log.warning("state refresh skipped: %s", e)

    def expire_quiet(self, engine: FeatureEngine) -> int:
        """Once per day of the engine's own event time, drop the customers and terminals no
        window can read any more, so that a stream of one-off cards levels off in memory
        instead of growing until the next rebalance. The day is the payments' (the engine's
        newest event time), not the records' timestamps: a replay of old payments expires
        as it goes. Scores do not change for payments up to ``EXPIRY_LATENESS`` late."""
        newest = engine.newest_event_time
        if newest is None:
            return 0
        day = newest.timestamp() // DAY_S
        if self._expired_day is not None and day <= self._expired_day:
            return 0
        self._expired_day = day
        dropped = engine.expire(newest - EXPIRY_LATENESS)
        log.info(
            "feature state: %d quiet customers and terminals dropped; %d customers, "
            "%d terminals held",
            dropped,
            engine.customer_count,
            engine.terminal_count,
        )
        return dropped


def _history_start(latest: datetime, engine: FeatureEngine) -> datetime:
    """Oldest stored event time the state needs: the windows' reach before ``latest`` and a
    label delay more, for partitions whose stored payments are behind ``latest`` (the engine
    trims terminals with the same slack)."""
    return state.history_start(latest, engine.label_delay_days) - timedelta(
        days=engine.label_delay_days
    )


def _replay(engine: FeatureEngine, history: state.History) -> None:
    """Stored payments through the engine, in bounded pieces."""
    for part in state.iter_chunks(history):
        engine.transform_columns(
            history.transaction_ids[part],
            history.customer_ids[part],
            history.terminal_ids[part],
            history.amounts[part],
            history.times[part],
            history.ratios[part],
        )


def _merged(ours: state.History, theirs: state.History) -> state.History:
    """Two histories as one in event-time order, as the full replay reads them (each keeps
    its own order; ours first at equal times)."""
    if not len(theirs):
        return ours
    both = [ours, theirs]
    order = sorted(((t, k, i) for k, h in enumerate(both) for i, t in enumerate(h.times)))
    out = state.History(last_id=max(ours.last_id, theirs.last_id))
    for name in (
        "transaction_ids",
        "customer_ids",
        "terminal_ids",
        "amounts",
        "times",
        "partitions",
        "ratios",
    ):
        columns = [getattr(h, name) for h in both]
        setattr(out, name, [columns[k][i] for _, k, i in order])
    return out
