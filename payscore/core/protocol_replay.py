"""Replaying a stored history through the serving ``FeatureEngine``, exactly as the
consumer would have seen it, keeping only the rows a training run needs.

Labels enter the engine before their payment, at their ``known_at``; a replay from
``Periods.replay_from()`` gives every kept row the features a replay from the very first
payment would (the engine reads no further back than its longest window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from payscore.core.features import FeatureEngine
from payscore.core.paymentfile import Progress
from payscore.core.protocol import LABEL_DELAY_DAYS

if TYPE_CHECKING:
    from payscore.core.training import History


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


class Feed:
    """One history through the engine, a slice at a time: labels first (at their known_at,
    the engine's own delay unless stored), then the payments."""

    def __init__(self, engine: FeatureEngine, history: History) -> None:
        self.engine = engine
        self.history = history
        self.times = history.times.tolist()
        self.amounts = history.amounts.tolist()
        self.labels = history.labels.tolist()
        self.known_at = history.label_known_at(engine.label_delay_days).tolist()
        # The stored ratios, so that terminals read what the live consumers read.
        stored = history.ratios
        self.ratios = None if stored is None else [None if r != r else r for r in stored.tolist()]

    def rows(self, start: int, stop: int) -> np.ndarray:
        h, labels, known_at = self.history, self.labels, self.known_at
        # A label is registered before its payment arrives; the engine keeps its known_at
        # and uses it only for payments at or after that time.
        for i in range(start, stop):
            if labels[i] >= 0:
                self.engine.add_label(h.transaction_ids[i], bool(labels[i]), known_at[i])
        return self.engine.transform_columns(
            h.transaction_ids[start:stop],
            h.customer_ids[start:stop],
            h.terminal_ids[start:stop],
            self.amounts[start:stop],
            self.times[start:stop],
            None if self.ratios is None else self.ratios[start:stop],
        )


@dataclass
class Replayed:
    """The payments kept from a replay (the periods' rows) with their features."""

    engine: FeatureEngine
    X: np.ndarray
    times: np.ndarray
    labels: np.ndarray
    known_at: np.ndarray
    customers: np.ndarray  # object array of customer ids
    payments: int  # all payments replayed, kept or not


def replay(
    chunks: Iterable[History],
    keep: tuple[float, float],
    *,
    engine: FeatureEngine | None = None,
    progress: Progress = _noop,
    total: int | None = None,
    chunk: int = 20_000,
) -> Replayed:
    """Run the serving engine over time-ordered chunks of history, keeping the features of
    payments with ``keep[0] <= time < keep[1]`` only, so memory follows the periods, not the
    history. ``progress("computing features", done, total)`` after each slice."""
    engine = engine or FeatureEngine(label_delay_days=LABEL_DELAY_DAYS)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("X", "t", "y", "k", "c")}
    done = 0
    for history in chunks:
        feed = Feed(engine, history)
        n = len(history.transaction_ids)
        known_at = history.label_known_at(engine.label_delay_days)
        customers = np.asarray(history.customer_ids, dtype=object)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            X = feed.rows(start, stop)
            times = history.times[start:stop]
            kept = (times >= keep[0]) & (times < keep[1])
            if kept.any():
                parts["X"].append(X[kept])
                parts["t"].append(times[kept])
                parts["y"].append(history.labels[start:stop][kept])
                parts["k"].append(known_at[start:stop][kept])
                parts["c"].append(customers[start:stop][kept])
            done += stop - start
            progress("computing features", done, total)
    width = len(engine.feature_names)

    def joined(key: str, empty: np.ndarray) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else empty

    return Replayed(
        engine,
        joined("X", np.empty((0, width))),
        joined("t", np.empty(0)),
        joined("y", np.empty(0, dtype=np.int64)),
        joined("k", np.empty(0)),
        joined("c", np.empty(0, dtype=object)),
        done,
    )
