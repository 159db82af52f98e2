"""What explanations and a challenger cost one consumer: off and on, in the same run.

The A/B machinery of ``metrics_cost.py`` (``measure_off_on``): the same pre-filled topic
drained by the real consumer, off and on alternating, the order swapped every round; per pair
payments/s and CPU per payment of this process, and the on/off ratios.

- ``explain``: ``explain_top_reasons`` 0 (off) against the configured value (3 if that is 0):
  every decision's reasons computed and stored (``Scorer.decide_and_explain``).
- ``challenger``: no challenger against one set as a running consumer sets it
  (``Scorer.challenger``), a second copy of the model at ``model_path``: the same work as a
  different model of that size. Explanations stay as configured in both.

    payscore bench --feature-cost explain --count 30000 --rounds 5
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from payscore.bench.metrics_cost import MetricsCost, measure_off_on
from payscore.bench.run import measure_consumer
from payscore.config import Settings

FEATURES = ("explain", "challenger")
DEFAULT_TOP_REASONS = 3


def measure_feature_cost(
    settings: Settings,
    feature: str,
    count: int = 30_000,
    rounds: int = 5,
    step: Callable[[str], None] = lambda _s: None,
) -> MetricsCost:
    """Pairs of consumer runs with ``feature`` (one of ``FEATURES``) off and on."""
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}")
    top = settings.explain_top_reasons or DEFAULT_TOP_REASONS
    if feature == "explain":
        title = f"explanations cost: {count} payments a run, {top} reasons a decision when on"
    else:
        title = (
            f"challenger cost: {count} payments a run, shadow-scored by a second copy of "
            f"{settings.model_path} when on"
        )
    result = MetricsCost(count=count, scrape_every_s=0.0, title=title)

    column = "explanation" if feature == "explain" else "challenger_version"
    marked = {False: 0, True: 0}  # decisions stored with the feature's column set, off / on

    @contextlib.contextmanager
    def around(_consumer: Any, app: Any, on: bool) -> Iterator[None]:
        from sqlalchemy import func, select

        from payscore.core.model import load_artifact
        from payscore.core.scoring import Scorer
        from payscore.store.schema import scored_transactions

        scorer = app.pipeline.scorer
        if feature == "challenger" and on:
            copy = load_artifact(settings.model_path, settings)
            scorer.challenger = Scorer(copy, scorer.engine, scorer.policy)
        yield
        # Checked after the timed run, from the run's scratch database: "on" really did it.
        c = scored_transactions.c[column]
        with app.db.connect() as conn:
            stored = conn.execute(select(func.count()).where(c.is_not(None))).scalar_one()
        marked[on] += int(stored)

    def run_one(topic: str, on: bool) -> Any:
        run = settings
        if feature == "explain":
            run = settings.model_copy(update={"explain_top_reasons": top if on else 0})

        def serve(consumer: Any, app: Any) -> contextlib.AbstractContextManager[None]:
            return around(consumer, app, on)

        return measure_consumer(run, topic, count, serve)[0]

    what = "explanations" if feature == "explain" else "challenger"
    measure_off_on(settings, result, rounds, run_one, what, step)
    result.notes.append(
        f"decisions stored with {column} set: {marked[True]:,} in the on runs, "
        f"{marked[False]:,} in the off runs"
    )
    return result
