"""The default model on worlds it was not tuned on: a family of simulated worlds.

World 0 is the handbook's; world N shifts every seed by N (``simulator.seed_offset``). For each
world this trains payscore's default model and the handbook's random forest on the same
periods (``training.train_default_model``), scores the test week by the handbook protocol and
computes what the week allows (``ceilings``: the trace oracle, whose CP@100 the floors are
stated against, and the stricter knowable oracle). ``select`` compares candidate settings of
the default model on prequential folds of development worlds (test weeks shifted 1-3 weeks
earlier), never on a test week. Features are cached per world (about 330 MB each), so a
rerun only fits.

    python -m payscore.bench.worlds --worlds 0,1,2,3,4,5 --cache /path/to/cache
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from payscore.bench.ceilings import (
    FRAUD_GROUPS,
    ap_parts,
    attack_traced_frauds,
    auc_parts,
    fraud_groups,
    knowable_oracle,
    knowable_scores,
    test_week,
    trace_ceiling,
    trace_oracle,
)
from payscore.core import features, simulator, training
from payscore.core.cache import cache_dir
from payscore.core.features import DAY, FeatureEngine
from payscore.core.metrics import METRIC_NAMES, evaluate
from payscore.core.protocol import (
    DELAY_START_DAY,
    LABEL_DELAY_DAYS,
    PERIOD_DAYS,
    TEST_END_DAY,
    TRAIN_START_DAY,
)

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1


def _feature_key() -> str:
    """Changes whenever the feature code or its columns change: a stale cache is never read."""
    source = Path(features.__file__).read_bytes()
    names = ",".join(features.feature_names_for((60, 3600))).encode()
    return hashlib.sha256(source + names).hexdigest()[:12]


def prepare(world: int, cache: Path | None) -> tuple[training.PreparedWorld, np.ndarray]:
    """World ``world`` up to the end of its test week with its features, and each payment's
    fraud scenario. With a ``cache`` folder, features are read from it (computed and written
    once). The engine returned is a fresh one (only its column names and settings are used to
    train and evaluate)."""
    df = simulator.load_world(world=world)
    history = training.History.from_world(df, end_day=TEST_END_DAY)
    scenario = df["TX_FRAUD_SCENARIO"].to_numpy()[: len(history.labels)]
    days = history.days - int(simulator.START.timestamp() // DAY)
    engine = FeatureEngine(label_delay_days=LABEL_DELAY_DAYS)
    path = None if cache is None else cache / f"features-w{world}-{_feature_key()}.npy"
    if path is not None and path.exists():
        X = np.load(path)
        if X.shape == (len(history.labels), len(engine.feature_names)):
            return training.PreparedWorld(history, engine, X, days), scenario
        log.warning("ignoring %s: its shape does not match world %d", path, world)
    prepared = training.prepare_world(world=df)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, prepared.X)
        os.replace(tmp, path)
    return prepared, scenario


@dataclass(frozen=True)
class WorldResult:
    world: int
    default: dict[str, float]
    forest: dict[str, float]
    oracle: dict[str, float]  # the trace oracle's metrics (``ceilings.trace_oracle``)
    knowable: dict[str, float]  # the knowable oracle's (``ceilings.knowable_oracle``)
    default_auc: dict[str, float]  # ``ceilings.auc_parts`` of the default's scores
    forest_auc: dict[str, float]  # and of the forest's
    # ``ceilings.ap_parts`` of the default's and of the knowable oracle's scores (where the
    # AP each one has comes from); empty: not computed
    default_ap: dict[str, float] = field(default_factory=dict)
    knowable_ap: dict[str, float] = field(default_factory=dict)
    # the knowable oracle with each card's habit read from its 30 days before, as a scorer
    # must (``ceilings.knowable_oracle(habit="history")``); empty: not computed
    knowable_history: dict[str, float] = field(default_factory=dict)

    @property
    def ceiling(self) -> float:
        return self.oracle["card_precision_at_100"]

    def floors(self) -> dict[str, bool]:
        """The issue's floors: AUC >= forest + 0.01, AP >= 0.77, CP@100 >= ceiling - 0.01."""
        d, eps = self.default, 1e-9  # CP@100 moves in steps of 1/700: 0.01 is a whole step
        return {
            "auc": d["auc_roc"] >= self.forest["auc_roc"] + 0.01 - eps,
            "ap": d["average_precision"] >= 0.77 - eps,
            "cp": d["card_precision_at_100"] >= self.ceiling - 0.01 - eps,
        }

    def out_of_reach(self) -> dict[str, bool]:
        """Which floors the knowable ceiling puts out of honest reach on this world:

        - AP: the knowable oracle's own AP is below 0.77, the cards' habits read from their
          history as a scorer must (``knowable_history``; the true habits when not computed);
        - CP@100: the default is within 0.01 of the knowable oracle's CP@100 (the trace
          oracle's counts frauds no model can see);
        - AUC: the default ranks the attack-traced frauds at least as well as the forest, and
          the two differ on the other frauds by less than two standard errors of chance
          ranking: the gap is where those frauds happen to fall among genuine payments.
        """
        d, eps = self.default, 1e-9
        rest_gap = abs(self.default_auc["rest"] - self.forest_auc["rest"])
        return {
            "auc": self.default_auc["traced"] >= self.forest_auc["traced"]
            and rest_gap < 2 * self.default_auc["rest_chance_se"],
            "ap": (self.knowable_history or self.knowable)["average_precision"] < 0.77,
            "cp": d["card_precision_at_100"] >= self.knowable["card_precision_at_100"] - 0.01 - eps,
        }

    def verdicts(self) -> list[str]:
        """Per floor: "yes" (held), "no (ceiling)" (missed, out of reach) or "no"."""
        reach = self.out_of_reach()
        return [
            "yes" if held else ("no (ceiling)" if reach[name] else "no")
            for name, held in self.floors().items()
        ]


def evaluate_world(world: int, cache: Path | None) -> WorldResult:
    """Train the default model and the handbook forest on ``world``; score its test week,
    split each one's AUC at the attack-traced frauds (``ceilings.auc_parts``), and the
    default's and the knowable oracle's AP by fraud group (``ceilings.ap_parts``)."""
    prepared, scenario = prepare(world, cache)
    default_model, default = training.train_default_model(prepared=prepared)
    forest_model, forest = training.train_default_model(baseline=True, prepared=prepared)
    y, test = prepared.history.labels, test_week(prepared)
    traced = attack_traced_frauds(prepared, scenario, world)[test]
    names, X = prepared.engine.feature_names, prepared.X[test]
    scores = [model.predict_scores(names, X) for model in (default_model, forest_model)]
    groups = fraud_groups(y[test], scenario[: len(y)][test], traced)
    knowable = knowable_scores(prepared, scenario, world)  # every payment's: computed once
    return WorldResult(
        world,
        default,
        forest,
        trace_oracle(prepared, scenario),
        knowable_oracle(prepared, scenario, world, scores=knowable),
        auc_parts(y[test], scores[0], traced),
        auc_parts(y[test], scores[1], traced),
        ap_parts(y[test], scores[0], groups),
        ap_parts(y[test], knowable[test], groups),
        knowable_oracle(prepared, scenario, world, habit="history"),
    )


def markdown_table(results: Sequence[WorldResult]) -> str:
    """One row per world: default and forest metrics, the ceilings, the floors held; then
    each one's AUC on the attack-traced frauds and on the rest."""
    lines = [
        "| world | payscore default AUC / AP / CP@100 | handbook forest AUC / AP / CP@100 "
        "| trace oracle AUC / AP / CP@100 | knowable oracle AUC / AP / CP@100 "
        "| knowable oracle, habits from history, AUC / AP / CP@100 "
        "| floors held: AUC / AP / CP |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        history = _triple(r.knowable_history) if r.knowable_history else "-"
        lines.append(
            f"| {_name(r.world)} | {_triple(r.default)} | {_triple(r.forest)} "
            f"| {_triple(r.oracle)} | {_triple(r.knowable)} | {history} "
            f"| {' / '.join(r.verdicts())} |"
        )
    lines += [
        "",
        "| world | default AUC: attack-traced / other frauds | forest AUC: attack-traced / "
        "other frauds | other frauds (chance s.e.) |",
        "|---|---|---|---|",
    ]
    for r in results:
        d, f = r.default_auc, r.forest_auc
        lines.append(
            f"| {_name(r.world)} | {d['traced']:.4f} / {d['rest']:.4f} "
            f"| {f['traced']:.4f} / {f['rest']:.4f} "
            f"| {int(d['rest_n'])} ({d['rest_chance_se']:.3f}) |"
        )
    with_ap = [r for r in results if r.default_ap]
    if with_ap:
        lines += [
            "",
            "| world | AP by fraud group, default / knowable oracle: "
            + " | ".join(FRAUD_GROUPS)
            + " |",
            "|---|" + "---|" * len(FRAUD_GROUPS),
        ]
        for r in with_ap:
            cells = (f"{r.default_ap[g]:.4f} / {r.knowable_ap[g]:.4f}" for g in FRAUD_GROUPS)
            lines.append(f"| {_name(r.world)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _name(world: int) -> str:
    return "0 (handbook)" if world == 0 else str(world)


def _triple(m: dict[str, float]) -> str:
    return " / ".join(f"{m[k]:.4f}" for k in METRIC_NAMES)


# ------------------------------------------------------------------ model selection


@dataclass(frozen=True)
class Candidate:
    """Settings to try for the default model: estimator parameters and dropped features."""

    name: str
    params: dict[str, Any]
    drop: tuple[str, ...] = ()
    train_start_day: int = training.DEFAULT_TRAIN_START_DAY

    def matrix(self, X: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The columns this candidate fits on."""
        return X[:, [i for i, n in enumerate(names) if n not in self.drop]]


def fold_metrics(
    prepared: training.PreparedWorld, candidate: Candidate, shift_weeks: int
) -> dict[str, float]:
    """Fit ``candidate`` on the protocol shifted ``shift_weeks`` earlier and score that
    validation week (known cards filtered as for the test week)."""
    shift = shift_weeks * PERIOD_DAYS
    days, y = prepared.days, prepared.history.labels
    train = (days >= candidate.train_start_day - shift) & (days < DELAY_START_DAY - shift)
    customers = np.asarray(prepared.history.customer_ids)
    valid = test_week(prepared, TRAIN_START_DAY - shift)
    names = prepared.engine.feature_names
    estimator = training.default_estimator().set_params(**candidate.params)
    with threadpool_limits(limits=1, user_api="openmp"):
        estimator.fit(candidate.matrix(prepared.X[train], names), y[train])
        scores = estimator.predict_proba(candidate.matrix(prepared.X[valid], names))[:, 1]
    return evaluate(y[valid], scores, days[valid], customers[valid])


def select(
    candidates: Sequence[Candidate], worlds: Sequence[int], folds: Sequence[int], cache: Path | None
) -> str:
    """Markdown: each candidate's validation metrics, mean over worlds x folds, and the
    worst fold's CP@100 gap to that fold's trace ceiling."""
    rows: dict[str, list[tuple[dict[str, float], float]]] = {c.name: [] for c in candidates}
    for world in worlds:
        prepared, scenario = prepare(world, cache)
        for k in folds:
            ceiling = trace_ceiling(prepared, scenario, TRAIN_START_DAY - k * PERIOD_DAYS)
            for c in candidates:
                m = fold_metrics(prepared, c, k)
                rows[c.name].append((m, ceiling))
                print(
                    f"world {world} fold {k} {c.name}: {_triple(m)} ceiling {ceiling:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    lines = [
        "| candidate | mean AUC / AP / CP@100 | worst CP@100 - ceiling |",
        "|---|---|---|",
    ]
    for name, got in rows.items():
        mean = {k: float(np.mean([m[k] for m, _ in got])) for k in METRIC_NAMES}
        worst = min(m["card_precision_at_100"] - c for m, c in got)
        lines.append(f"| {name} | {_triple(mean)} | {worst:+.4f} |")
    return "\n".join(lines)


NEWEST_FEATURES = ("customer_max_ratio_7day", "customer_nb_high_14day", "terminal_fraud_run_days")
CANDIDATES = (
    Candidate("default", {}),
    Candidate("10 weeks (from day 52)", {}, train_start_day=52),
    Candidate("fraud weight 1", {"class_weight": None}),
    Candidate("min leaf 100, L2 5", {"min_samples_leaf": 100, "l2_regularization": 5.0}),
    Candidate("without the 3 newest features", {}, drop=NEWEST_FEATURES),
    Candidate(
        "lr 0.1, 150 it, 15 leaves", {"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 15}
    ),
    Candidate("without amount_whole", {}, drop=("amount_whole",)),
    Candidate("without terminal_last_fraud_ratio", {}, drop=("terminal_last_fraud_ratio",)),
    Candidate("fraud weight 10", {"class_weight": {0: 1.0, 1: 10.0}}),
    Candidate("min leaf 20", {"min_samples_leaf": 20}),
    Candidate("L2 3", {"l2_regularization": 3.0}),
)


def _candidates(text: str) -> list[Candidate]:
    """Candidates by name, separated by semicolons (names hold commas)."""
    by_name = {c.name: c for c in CANDIDATES}
    wanted = [part.strip() for part in text.split(";") if part.strip()]
    if not wanted:
        raise argparse.ArgumentTypeError("at least one candidate")
    for name in wanted:
        if name not in by_name:
            choices = "; ".join(by_name)
            raise argparse.ArgumentTypeError(f"unknown candidate {name!r}; choose from: {choices}")
    return [by_name[w] for w in wanted]


def _worlds(text: str) -> list[int]:
    try:
        worlds = [int(part) for part in text.split(",") if part.strip()]
        for w in worlds:
            simulator.seed_offset(w)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"a comma-separated list of worlds ({e})") from e
    if not worlds:
        raise argparse.ArgumentTypeError("at least one world")
    return worlds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m payscore.bench.worlds", description=__doc__)
    parser.add_argument("--worlds", type=_worlds, default=[0, 1, 2, 3, 4, 5])
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="feature cache folder (default: the payscore cache dir + /worlds)",
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute features")
    parser.add_argument(
        "--select",
        action="store_true",
        help="compare the candidate settings on prequential folds of --worlds instead",
    )
    parser.add_argument("--folds", type=_worlds, default=[1, 2], help="weeks shifted back")
    parser.add_argument(
        "--candidates",
        type=_candidates,
        default=list(CANDIDATES),
        help="with --select: the candidates to fit, by name, separated by ';' (default: all)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="write the first world of --worlds as a `payscore train --data` file and stop",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = None if args.no_cache else (args.cache or cache_dir() / "worlds")
    if args.csv is not None:
        n = simulator.write_csv(simulator.load_world(world=args.worlds[0]), args.csv)
        print(f"wrote {n:,} payments of world {args.worlds[0]} to {args.csv}")
        return 0
    if args.select:
        print(select(args.candidates, args.worlds, args.folds, cache))
        return 0
    results = []
    for world in args.worlds:
        results.append(evaluate_world(world, cache))
        print(markdown_table(results[-1:]).splitlines()[2], file=sys.stderr, flush=True)
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
