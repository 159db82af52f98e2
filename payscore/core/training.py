"""Training on the handbook world (or a labelled CSV) with the handbook's protocol.

Features come from running the serving ``FeatureEngine`` over the history in event order,
feeding each label at its ``known_at`` (event time + the 7-day delay), so training sees
exactly what the consumer would have seen. The handbook's split is in ``protocol.py``; see
docs/model.md for the protocol and figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from payscore.core import simulator
from payscore.core.budget import set_thresholds
from payscore.core.drift import REFERENCE_KEY, training_reference
from payscore.core.features import DAY, FeatureEngine
from payscore.core.metrics import evaluate
from payscore.core.model import ModelArtifact
from payscore.core.paymentfile import (
    MAX_INPUT_BYTES,
    PaymentFile,
    Progress,
    RejectedRow,
    nothing_usable,
    plural,
)
from payscore.core.protocol import (
    DELAY_START_DAY,
    HANDBOOK_FEATURES,
    LABEL_DELAY_DAYS,
    TEST_END_DAY,
    TEST_START_DAY,
    TRAIN_START_DAY,
)
from payscore.core.protocol_dates import Periods, resolve_periods, select
from payscore.core.protocol_replay import Feed, Replayed, replay
from payscore.errors import InputError

log = logging.getLogger(__name__)


# The default model learns from six weeks, 2018-06-20 .. 07-31 (ending where the protocol's
# training week ends). Chosen, with the estimator's settings, on the protocol shifted one
# week earlier (validation test week 08-01 .. 08-07), never on the test week: see docs/model.md.
DEFAULT_TRAIN_START_DAY = 80


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass
class History:
    """Time-ordered payments in column form (epoch seconds, float amounts); label 1 fraud,
    0 genuine, -1 unknown (an unlabelled payment still shapes the features of later ones)."""

    transaction_ids: list[str]
    customer_ids: list[str]
    terminal_ids: list[str]
    amounts: np.ndarray
    times: np.ndarray
    labels: np.ndarray
    # When each label became known (epoch seconds), as stored with it; None (or NaN for a
    # row): event time + the engine's label delay (the simulated world, a file).
    known_at: np.ndarray | None = None
    # Each payment's amount ratio as its consumer stored it (``scored_transactions
    # .amount_ratio``); None (or NaN for a row): computed by the replay (a world, a file).
    ratios: np.ndarray | None = None

    @property
    def days(self) -> np.ndarray:
        return np.floor(self.times / DAY).astype(np.int64)

    def label_known_at(self, label_delay_days: int) -> np.ndarray:
        """When each label became known: as stored, else (None or NaN) event time + delay."""
        default = self.times + label_delay_days * DAY
        if self.known_at is None:
            return default
        return np.where(np.isnan(self.known_at), default, self.known_at)

    @classmethod
    def from_world(cls, df: pd.DataFrame, end_day: int | None = None) -> History:
        if end_day is not None:
            df = df.iloc[: int(np.searchsorted(df["TX_TIME_DAYS"].to_numpy(), end_day))]
        return cls(
            df["TRANSACTION_ID"].astype(str).tolist(),
            df["CUSTOMER_ID"].astype(str).tolist(),
            df["TERMINAL_ID"].astype(str).tolist(),
            simulator.payment_amounts(df),
            simulator.event_seconds(df),
            df["TX_FRAUD"].to_numpy(dtype=np.int64),
        )


def compute_features(
    history: History,
    engine: FeatureEngine | None = None,
    progress: Progress = _noop,
    chunk: int = 20_000,
) -> tuple[FeatureEngine, np.ndarray]:
    """Run the serving engine over the whole history; labels enter at event time + delay.

    ``progress("computing features", done, total)`` is called after each chunk.
    """
    engine = engine or FeatureEngine(label_delay_days=LABEL_DELAY_DAYS)
    n = len(history.transaction_ids)
    out = np.empty((n, len(engine.feature_names)), dtype=np.float64)
    feed = Feed(engine, history)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = feed.rows(start, stop)
        progress("computing features", stop, n)
    return engine, out


def handbook_baseline_estimator() -> Any:
    """The handbook's random forest: StandardScaler + RandomForestClassifier defaults."""
    return make_pipeline(StandardScaler(), RandomForestClassifier(random_state=0, n_jobs=2))


def default_estimator() -> Any:
    """payscore's default: gradient-boosted trees (fast batch scoring, strong on tabular)."""
    return HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        class_weight={0: 1.0, 1: 5.0},
        early_stopping=False,
        random_state=0,
    )


@dataclass
class PreparedWorld:
    """The handbook world up to the end of the test week, with its engine features."""

    history: History
    engine: FeatureEngine
    X: np.ndarray
    days: np.ndarray  # day index from 2018-04-01


def prepare_world(
    progress: Progress | None = None, world: pd.DataFrame | None = None
) -> PreparedWorld:
    """Load (or generate) the world and compute features up to the end of the test week."""
    progress = progress or _noop
    progress("loading the simulated world", 0, None)
    df = simulator.load_world() if world is None else world
    history = History.from_world(df, end_day=TEST_END_DAY)
    engine, X = compute_features(history, progress=progress)
    days = history.days - int(simulator.START.timestamp() // DAY)
    return PreparedWorld(history, engine, X, days)


def handbook_periods(baseline: bool = False) -> dict[str, date]:
    """The handbook protocol's dates; the default model trains from 2018-06-20, the
    handbook's forest on the training week alone."""
    start = simulator.START.date()
    first = TRAIN_START_DAY if baseline else DEFAULT_TRAIN_START_DAY
    return {
        "train_start": start + timedelta(days=first),
        "train_end": start + timedelta(days=DELAY_START_DAY - 1),
        "validation_start": start + timedelta(days=DELAY_START_DAY),
        "validation_end": start + timedelta(days=TEST_START_DAY - 1),
        "test_start": start + timedelta(days=TEST_START_DAY),
        "test_end": start + timedelta(days=TEST_END_DAY - 1),
    }


def _given(base: dict[str, date | None], given: dict[str, date | None] | None) -> dict:
    out = dict(base)
    out.update({k: v for k, v in (given or {}).items() if v is not None})
    return out


def train_default_model(
    progress: Progress | None = None,
    *,
    baseline: bool = False,
    prepared: PreparedWorld | None = None,
    given: dict[str, date | None] | None = None,
    world: int = 0,
    review_budget: float | None = None,
) -> tuple[ModelArtifact, dict[str, float]]:
    """Train on the handbook world (or simulated world ``world``, see
    ``simulator.generate_world``); returns the artifact and its test-week metrics.

    ``progress(stage, done, total)`` is called as work advances (``total`` None when a stage
    has no count: loading, fitting, evaluating). ``baseline=True`` trains the
    handbook's random forest on its 15 features and one week instead of payscore's default.
    ``given`` dates replace the handbook protocol's.
    """
    progress = progress or _noop
    if prepared is None:
        prepared = prepare_world(progress, simulator.load_world(world=world) if world else None)
    h = prepared.history
    rows = Replayed(
        prepared.engine,
        prepared.X,
        h.times,
        h.labels,
        h.label_known_at(prepared.engine.label_delay_days),
        np.asarray(h.customer_ids, dtype=object),
        len(h.transaction_ids),
    )
    periods = resolve_periods(
        float(rows.times.min()),
        float(rows.times.max()),
        _given(handbook_periods(baseline), given),  # type: ignore[arg-type]
        label_delay_days=rows.engine.label_delay_days,
    )
    source = f"simulated world {world}" if world else "handbook simulated world"
    return train_by_dates(
        rows, periods, baseline=baseline, source=source, progress=progress, budget=review_budget
    )


def train_by_dates(
    rows: Replayed,
    periods: Periods,
    *,
    baseline: bool,
    source: str,
    progress: Progress,
    rejected_rows: int | None = None,
    budget: float | None = None,
) -> tuple[ModelArtifact, dict[str, float]]:
    """Fit on the training period, set thresholds on the validation period (the review one
    from ``budget`` cards a day if given, ``core.budget``), evaluate on the test period (see
    ``protocol_dates.select``); each empty part is one clear error."""
    sel = select(periods, rows.times, rows.labels, rows.known_at, rows.customers)
    y, engine, X = rows.labels, rows.engine, rows.X
    train, validation, test = sel.train, sel.validation, sel.test
    names = HANDBOOK_FEATURES if baseline else engine.feature_names
    cols = [engine.feature_names.index(n) for n in names]

    def span(part: str) -> str:
        return " .. ".join(periods.dates(part))

    if not train.any():
        raise InputError(
            f"the training period {span('train')} has no labelled payments known before "
            f"{periods.as_metadata()['label_cutoff']} (after the warm-up)"
        )
    if y[train].min(initial=1) == y[train].max(initial=0):
        raise InputError(
            f"the training period {span('train')} needs both fraudulent and genuine payments"
        )
    if periods.validation is not None and not validation.any():
        raise InputError(f"the validation period {span('validation')} has no payments")
    if not test.any():
        raise InputError(
            f"the test period {span('test')} has no labelled payments (after the warm-up and "
            "without cards already known compromised)"
        )
    estimator = handbook_baseline_estimator() if baseline else default_estimator()
    progress(f"fitting the model on {int(train.sum()):,} payments", 0, None)
    started = time.perf_counter()
    # One OpenMP thread: on a shared 2-core machine extra threads spin and slow the fit down.
    with threadpool_limits(limits=1, user_api="openmp"):
        estimator.fit(X[train][:, cols], y[train])
    fit_seconds = time.perf_counter() - started
    progress("evaluating on the test period", 0, None)
    artifact_stub = ModelArtifact(estimator, names, {})
    scores_test = artifact_stub.predict_scores(engine.feature_names, X[test])
    try:
        metrics = evaluate(y[test], scores_test, sel.days[test], rows.customers[test])
    except ValueError as e:
        raise InputError(f"{e} (test period {span('test')})") from e
    v = validation
    if v.any():
        scores_val = artifact_stub.predict_scores(engine.feature_names, X[v])
        thresholds, chosen = set_thresholds(
            scores_val, sel.days[v], rows.customers[v], y[v], budget
        )
    elif budget is not None:
        raise InputError("--review-budget needs a validation period to set the threshold on")
    else:
        thresholds, chosen = {"review": 0.5, "decline": 0.9}, None
    metadata = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_period": {
            **periods.as_metadata(),
            "source": source,
            "replayed_payments": rows.payments,
            "train_payments": int(train.sum()),
            "train_frauds": int(y[train].sum()),
            "validation_payments": int(validation.sum()),
            "test_payments": int(test.sum()),
            "test_frauds": int(y[test].sum()),
            **({} if rejected_rows is None else {"rejected_rows": rejected_rows}),
        },
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "thresholds": thresholds,
        **({} if chosen is None else {"review_budget": chosen.as_metadata()}),
        "model_type": _model_type(estimator),
        "baseline": baseline,
        "fit_seconds": round(fit_seconds, 2),
        "feature_engine": {
            "velocity_windows": list(engine.velocity_windows),
            "label_delay_days": engine.label_delay_days,
        },
        "feature_ranges": _ranges(names, X, train, cols),
        REFERENCE_KEY: training_reference(
            names,
            X,
            cols,
            train,
            validation,
            lambda rows: artifact_stub.predict_scores(engine.feature_names, X[rows]),
        ),
    }
    artifact = ModelArtifact(estimator, names, metadata)
    return artifact, metrics


def _ranges(
    names: tuple[str, ...], X: np.ndarray, rows: np.ndarray, cols: list[int]
) -> dict[str, list[float]]:
    """Each feature's [min, max] over the training rows (NaN ignored): where the scoring
    paths are compared at load (``ModelArtifact.probe``). One column at a time, no copy of X."""
    out = {}
    for name, col in zip(names, cols, strict=True):
        column = X[rows, col]
        column = column[~np.isnan(column)]
        if len(column):
            out[name] = [float(column.min()), float(column.max())]
    return out


def _model_type(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return "+".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


@dataclass(frozen=True)
class LabelledFile:
    """A user's payment file read for training: its history and the rows it rejected."""

    path: Path
    format: str  # "csv" or "jsonl"
    history: History
    rejected: list[RejectedRow]

    @property
    def labelled(self) -> int:
        return int((self.history.labels >= 0).sum())


def read_history(
    path: str | Path, progress: Progress | None = None, max_bytes: int = MAX_INPUT_BYTES
) -> LabelledFile:
    """A payment file (see docs/model.md) as a time-ordered History, read by ``paymentfile``
    with the consumer's validation: bad rows are skipped and collected in ``rejected``, never
    fatal here (``train_on_file`` refuses a file with no usable row)."""
    source = PaymentFile(path, max_bytes, progress)
    txids: list[str] = []
    customers: list[str] = []
    terminals: list[str] = []
    amounts: list[float] = []
    times: list[float] = []
    labels: list[int] = []
    for row in source:
        p = row.payment
        txids.append(p.transaction_id)
        customers.append(p.customer_id)
        terminals.append(p.terminal_id)
        amounts.append(float(p.amount))
        times.append(p.event_time.timestamp())
        labels.append(-1 if row.is_fraud is None else int(row.is_fraud))
    if txids and not source.has_labels:
        raise InputError(f"{source.path} has no is_fraud column: training needs labels")
    order = np.argsort(np.asarray(times), kind="stable")
    history = History(
        [txids[i] for i in order],
        [customers[i] for i in order],
        [terminals[i] for i in order],
        np.asarray(amounts, dtype=np.float64)[order],
        np.asarray(times, dtype=np.float64)[order],
        np.asarray(labels, dtype=np.int64)[order],
    )
    return LabelledFile(source.path, source.format, history, source.rejected)


def train_from_csv(
    path: str | Path,
    progress: Progress | None = None,
    *,
    baseline: bool = False,
    given: dict[str, date | None] | None = None,
) -> tuple[ModelArtifact, dict[str, float]]:
    """Train on a labelled payment file (CSV or JSON lines); bad rows are skipped."""
    return train_on_file(read_history(path, progress), progress, baseline=baseline, given=given)


def file_periods(data: LabelledFile, given: dict[str, date | None] | None = None) -> Periods:
    """The periods for a file read by ``read_history``: ``given`` dates, the rest derived."""
    history = data.history
    if not len(history.transaction_ids):
        raise nothing_usable(data.path, data.rejected)
    if data.labelled < 100:
        raise InputError(
            f"{data.path} has {plural(data.labelled, 'usable labelled row')}; "
            "at least 100 are needed"
        )
    return resolve_periods(float(history.times[0]), float(history.times[-1]), dict(given or {}))


def train_on_file(
    data: LabelledFile,
    progress: Progress | None = None,
    *,
    baseline: bool = False,
    given: dict[str, date | None] | None = None,
    periods: Periods | None = None,
    review_budget: float | None = None,
) -> tuple[ModelArtifact, dict[str, float]]:
    """Train on a file read by ``read_history``, by dates (``protocol_dates``): unlabelled
    rows and warm-up rows feed the features but are not learned from or tested on."""
    progress = progress or _noop
    periods = periods or file_periods(data, given)
    history = data.history
    rows = replay([history], periods.kept(), progress=progress, total=len(history.times))
    return train_by_dates(
        rows,
        periods,
        baseline=baseline,
        source=f"{data.format} {data.path.name}",
        progress=progress,
        rejected_rows=len(data.rejected),
        budget=review_budget,
    )


def train_on_stored(
    chunks: Iterable[History],
    periods: Periods,
    total: int | None,
    progress: Progress | None = None,
    *,
    baseline: bool = False,
    source: str = "database",
    review_budget: float | None = None,
) -> tuple[ModelArtifact, dict[str, float]]:
    """Train on stored payments read in time-ordered chunks from ``periods.replay_from()``
    (see ``store/history.py``); only the periods' rows are held in memory."""
    progress = progress or _noop
    rows = replay(chunks, periods.kept(), progress=progress, total=total)
    return train_by_dates(
        rows, periods, baseline=baseline, source=source, progress=progress, budget=review_budget
    )
