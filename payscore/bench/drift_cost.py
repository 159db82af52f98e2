"""What drift counting costs the consumer's batch path: off and on, in the same run.

The batch path is what the consumer runs per batch: ``Pipeline.prepare`` (parse, known-id
lookup, features, model, rules and, when on, the drift bins: ``core/drift.py``) and
``Pipeline.write`` (the batch's transaction and, when on, its ``feature_histograms`` upsert).
Off is the same model with its ``drift_reference`` removed, so nothing is binned or counted.
Each run decides the same payments into a scratch database of its own; off and on alternate,
the order swapped every round; the CPU of this process per payment is the figure (wall time is
printed too, but on a shared machine it mostly measures the neighbours).

    python -m payscore.bench.drift_cost --model MODEL --count 20000 --rounds 5

with ``PAYSCORE_DATABASE_URL`` (and ``PAYSCORE_DATABASE_PASSWORD``) naming a MySQL/MariaDB
server the scratch databases are made on (docs/benchmarks.md, "Drift counting").
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from payscore.config import Settings, load_settings
from payscore.core.drift import REFERENCE_KEY
from payscore.core.model import ModelArtifact, load_artifact
from payscore.core.schema import payment_to_json
from payscore.pipeline import Pipeline, RawMessage, build_scorer
from payscore.store.engine import make_engine
from payscore.store.writer import DecisionWriter

BATCH = 500
START_DAY = 150  # payments from here on: every customer and terminal has a history


@dataclass
class Timing:
    """One run: CPU and wall seconds in prepare and in write, and payments decided."""

    prepare_cpu: float = 0.0
    write_cpu: float = 0.0
    wall: float = 0.0
    decided: int = 0
    drift_cpu: float = 0.0  # inside the drift calls alone (binning, taking, counting)
    drift_write_cpu: float = 0.0  # of which the writer's counting (with its upsert)

    def per_payment_us(self) -> float:
        return (self.prepare_cpu + self.write_cpu) / max(self.decided, 1) * 1e6


@dataclass
class DriftCost:
    count: int
    runs: dict[bool, list[Timing]] = field(default_factory=lambda: {False: [], True: []})

    def ratios(self) -> list[float]:
        return [
            on.per_payment_us() / off.per_payment_us()
            for off, on in zip(self.runs[False], self.runs[True], strict=True)
        ]

    def report(self) -> str:
        lines = [f"drift counting cost: {self.count:,} payments a run, batches of {BATCH}"]
        for on in (False, True):
            runs = self.runs[on]
            cpu = [t.per_payment_us() for t in runs]
            prep = [t.prepare_cpu / max(t.decided, 1) * 1e6 for t in runs]
            write = [t.write_cpu / max(t.decided, 1) * 1e6 for t in runs]
            wall = [t.decided / t.wall for t in runs if t.wall]
            lines.append(
                f"  {'on ' if on else 'off'}: CPU {statistics.median(cpu):.1f} us/payment "
                f"(prepare {statistics.median(prep):.1f}, write {statistics.median(write):.1f}); "
                f"{statistics.median(wall):,.0f} payments/s wall; runs "
                + ", ".join(f"{v:.1f}" for v in cpu)
            )
        on_runs = self.runs[True]
        share = [t.drift_cpu / (t.prepare_cpu + t.write_cpu) for t in on_runs]
        drift_us = [t.drift_cpu / max(t.decided, 1) * 1e6 for t in on_runs]
        write_us = [t.drift_write_cpu / max(t.decided, 1) * 1e6 for t in on_runs]
        lines.append(
            f"  drift calls alone, in the on runs: {statistics.median(drift_us):.2f} us/payment "
            f"(the writer's counting {statistics.median(write_us):.2f}), "
            f"{statistics.median(share):.2%} of the batch path's CPU (runs: "
            + ", ".join(f"{v:.2%}" for v in share)
            + ")"
        )
        ratios = self.ratios()
        lines.append(
            f"  on/off CPU per payment: median {statistics.median(ratios):.3f} "
            f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
        return "\n".join(lines)


def payments(count: int, warm_days: int = 30) -> tuple[list[Any], list[RawMessage]]:
    """``warm_days`` of the handbook world's history, then ``count`` payments as messages."""
    from payscore.core import simulator

    world = simulator.load_world()
    days = world["TX_TIME_DAYS"].to_numpy()
    lo, start = (int(days.searchsorted(d)) for d in (START_DAY - warm_days, START_DAY))
    history = simulator.to_payments(world.iloc[lo:start])
    timed = simulator.to_payments(world.iloc[start : start + count])
    return history, [
        RawMessage("payments", 0, i, p.customer_id.encode(), payment_to_json(p))
        for i, p in enumerate(timed)
    ]


@contextlib.contextmanager
def _timed_drift(timing: Timing, pipeline: Pipeline) -> Iterator[None]:
    """Time the drift calls alone: the pipeline's binning and the writer's counting."""
    from payscore.store import writer

    def timed(fn: Callable[..., Any], write: bool = False) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            cpu = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - cpu
                timing.drift_cpu += spent
                if write:
                    timing.drift_write_cpu += spent

        return call

    bins, counts = pipeline.drift, writer.add_counts
    bins.observe = timed(bins.observe)  # type: ignore[method-assign]
    bins.take = timed(bins.take)  # type: ignore[method-assign]
    writer.add_counts = timed(counts, write=True)
    try:
        yield
    finally:
        writer.add_counts = counts


def run_once(
    settings: Settings, artifact: ModelArtifact, state: dict[str, Any], msgs: list[RawMessage]
) -> Timing:
    """Decide ``msgs`` batch by batch on a scratch database, the features starting from the
    engine ``state`` (a snapshot); times each batch's prepare and write."""
    from payscore.bench.scratch import scratch_database
    from payscore.core.features import FeatureEngine

    with scratch_database(settings, "drift") as scratch:
        db = make_engine(scratch, pre_ping=False)
        lookup = make_engine(scratch, pre_ping=False, autocommit=True)
        try:
            pipeline = Pipeline(build_scorer(scratch, artifact), DecisionWriter(db, lookup), "g")
            pipeline.scorer.engine = FeatureEngine.restore(state)
            timing = Timing()
            started = time.perf_counter()
            with _timed_drift(timing, pipeline):
                for lo in range(0, len(msgs), BATCH):
                    cpu = time.process_time()
                    batch = pipeline.prepare(msgs[lo : lo + BATCH])
                    mid = time.process_time()
                    result = pipeline.write(batch)
                    timing.prepare_cpu += mid - cpu
                    timing.write_cpu += time.process_time() - mid
                    timing.decided += result.decided
            timing.wall = time.perf_counter() - started
            return timing
        finally:
            lookup.dispose()
            db.dispose()


def measure(settings: Settings, model: str, count: int, rounds: int) -> DriftCost:
    on = load_artifact(model, settings)
    if REFERENCE_KEY not in on.metadata:
        raise SystemExit(f"{model} has no drift reference: train it with this payscore")
    meta = {k: v for k, v in on.metadata.items() if k != REFERENCE_KEY}
    off = ModelArtifact(on.estimator, on.feature_names, meta, on.version)
    history, msgs = payments(count)
    engine = build_scorer(settings, on).engine
    engine.transform(history)
    state = engine.snapshot()
    result = DriftCost(count)
    for r in range(rounds):
        for drift_on in (False, True) if r % 2 == 0 else (True, False):
            timing = run_once(settings, on if drift_on else off, state, msgs)
            result.runs[drift_on].append(timing)
            print(f"round {r + 1} {'on ' if drift_on else 'off'}: {timing.per_payment_us():.1f} us")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model artifact with a drift reference")
    parser.add_argument("--count", type=int, default=20_000, help="timed payments a run")
    parser.add_argument("--rounds", type=int, default=5, help="off/on pairs")
    args = parser.parse_args()
    settings = load_settings().settings
    print(measure(settings, args.model, args.count, args.rounds).report())


if __name__ == "__main__":
    main()
