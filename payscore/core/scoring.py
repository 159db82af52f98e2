"""The Scorer: features, model, rules and decision for a batch, one code path everywhere.

The stream consumer, ``payscore score`` (backtests) and ``payscore demo`` all call
``Scorer.score_batch``, so a backtest scores exactly as production does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from payscore.core.decision import APPROVED, DECLINED, REVIEW, Decision, Policy, decide
from payscore.core.protocol import LABEL_DELAY_DAYS
from payscore.core.rules import evaluate_rules, velocity_feature
from payscore.core.schema import Payment
from payscore.errors import ConfigError

if TYPE_CHECKING:
    from payscore.core.explain import Reason
    from payscore.core.features import FeatureEngine
    from payscore.core.model import ModelArtifact

__all__ = [
    "APPROVED",
    "DECLINED",
    "REVIEW",
    "Decided",
    "Decision",
    "Policy",
    "Scorer",
    "engine_for",
    "engine_windows",
    "label_delay_days",
]

_VELOCITY = re.compile(r"customer_nb_tx_([0-9]+)s")
DEFAULT_VELOCITY_WINDOWS = (60, 3600)


def engine_windows(artifact: ModelArtifact, policy: Policy) -> tuple[int, ...]:
    """Velocity windows an engine needs for this model's columns and this policy's rules."""
    from_model = {int(m.group(1)) for n in artifact.feature_names if (m := _VELOCITY.fullmatch(n))}
    return tuple(sorted({*DEFAULT_VELOCITY_WINDOWS, *from_model, *policy.velocity_windows()}))


def engine_for(artifact: ModelArtifact, policy: Policy) -> FeatureEngine:
    """A fresh FeatureEngine that computes everything the model and the rules read."""
    from payscore.core.features import FeatureEngine

    return FeatureEngine(
        velocity_windows=engine_windows(artifact, policy),
        label_delay_days=label_delay_days(artifact),
    )


def label_delay_days(artifact: ModelArtifact) -> int:
    """The label delay the model was trained with: ``feature_engine.label_delay_days`` as
    training writes it (a top-level key in older metadata), else the handbook's 7 days."""
    meta = artifact.metadata
    engine_meta = meta.get("feature_engine")
    if isinstance(engine_meta, dict) and "label_delay_days" in engine_meta:
        return int(engine_meta["label_delay_days"])
    return int(meta.get("label_delay_days", LABEL_DELAY_DAYS))


@dataclass(frozen=True)
class Decided:
    """A batch's decisions, their reasons (None when not explained) and the rules that fired
    (``evaluate_rules``, for the challenger to reuse)."""

    decisions: list[Decision]
    reasons: list[list[Reason]] | None
    fired: np.ndarray


class Scorer:
    """Scores batches of payments in event-time order; owns the engine's state while it runs."""

    def __init__(self, artifact: ModelArtifact, engine: FeatureEngine, policy: Policy) -> None:
        names = set(engine.feature_names)
        missing = [name for name in policy.required_features() if name not in names]
        if missing:
            windows = [w for w in policy.velocity_windows() if velocity_feature(w) in missing]
            if windows:
                raise ConfigError(
                    "velocity_window_seconds",
                    "settings",
                    f"the feature engine does not track a {windows[0]}s window; build it with "
                    f"FeatureEngine(velocity_windows=...) including {windows[0]}",
                )
            raise ConfigError("rules", "policy", f"feature engine lacks {', '.join(missing)}")
        missing_model = [name for name in artifact.feature_names if name not in names]
        if missing_model:
            raise ConfigError(
                "model_path",
                "settings",
                f"the model needs features the engine does not compute: {', '.join(missing_model)}",
            )
        self.artifact = artifact
        self.engine = engine
        self.policy = policy
        #: Scores beside this one on the same features, never deciding (its thresholds, these
        #: rules): set by a running consumer from the registry (stream/live.py).
        self.challenger: Scorer | None = None
        #: Reasons the pipeline stores with each decision (setting ``explain_top_reasons``;
        #: 0: none). ``payscore score`` passes its own ``--top-reasons`` instead.
        self.explain_top = 0
        artifact.warm_up()  # compile the tree walk before the first payment waits for it

    @classmethod
    def from_settings_values(
        cls,
        artifact: ModelArtifact,
        engine: FeatureEngine | None,
        *,
        review_threshold: float | None,
        decline_threshold: float | None,
        velocity_max_payments: int,
        velocity_window_seconds: int,
        amount_review_limit: float,
        amount_decline_limit: float,
    ) -> Scorer:
        """Build the stock policy (model thresholds unless overridden) around an engine.

        With ``engine=None`` a fresh engine is made that tracks every window needed.
        """
        policy = Policy.from_values(
            artifact.metadata.get("thresholds"),
            review_threshold=review_threshold,
            decline_threshold=decline_threshold,
            velocity_max_payments=velocity_max_payments,
            velocity_window_seconds=velocity_window_seconds,
            amount_review_limit=amount_review_limit,
            amount_decline_limit=amount_decline_limit,
        )
        return cls(artifact, engine if engine is not None else engine_for(artifact, policy), policy)

    @property
    def model_version(self) -> str:
        return self.artifact.version

    def score_batch(self, payments: Sequence[Payment]) -> list[Decision]:
        """Decide a batch (event-time order per customer); updates the engine's state."""
        return self.score_batch_with_features(payments)[0]

    def score_batch_with_features(
        self, payments: Sequence[Payment]
    ) -> tuple[list[Decision], np.ndarray]:
        """Decisions plus the feature matrix (columns: ``engine.feature_names``)."""
        names = self.engine.feature_names
        if not payments:
            return [], np.empty((0, len(names)), dtype=np.float64)
        X = self.engine.transform(payments)
        return self.decide_rows([p.transaction_id for p in payments], X, payments), X

    def decide_rows(
        self, ids: Sequence[str], X: np.ndarray, payments: Sequence[Payment]
    ) -> list[Decision]:
        """Model and rules on feature rows (columns: ``engine.feature_names``)."""
        return self.decide_and_explain(ids, X, payments).decisions

    def decide_and_explain(
        self, ids: Sequence[str], X: np.ndarray, payments: Sequence[Payment], top: int = 0
    ) -> Decided:
        """Model and rules on feature rows and, with ``top`` > 0 and a walkable model, each
        row's ``top`` reasons (``explain.explain``), the scores and contributions taken from
        one tree walk (``explain.scored_contributions``: the same scores as without)."""
        from payscore.core import explain

        names = self.engine.feature_names
        fired = evaluate_rules(self.policy.rules, names, X, payments)
        reasons = None
        if top > 0 and len(ids) and explain.explainable(self.artifact):
            scores, C = explain.scored_contributions(self.artifact, names, X)
            reasons = explain.explain(self.artifact, names, X, top, C)
        else:
            scores = self.artifact.predict_scores(names, X)
        decisions = decide(self.policy, ids, scores, names, X, self.model_version, payments, fired)
        return Decided(decisions, reasons, fired)

    def shadow_rows(
        self,
        ids: Sequence[str],
        X: np.ndarray,
        payments: Sequence[Payment],
        fired: np.ndarray | None = None,
    ) -> list[Decision] | None:
        """What the challenger would decide on the same rows, under these rules; None without
        a challenger. ``fired``: the champion's rule results on these rows (``Decided.fired``),
        reused, so the challenger adds only its own tree walk and the decision."""
        challenger = self.challenger
        if challenger is None:
            return None
        if challenger.policy.rules is not self.policy.rules:
            challenger.policy = replace(self.policy, thresholds=challenger.policy.thresholds)
        names = self.engine.feature_names
        scores = challenger.artifact.predict_scores(names, X)
        return decide(
            challenger.policy, ids, scores, names, X, challenger.model_version, payments, fired
        )

    def feature(self, X: np.ndarray, name: str) -> np.ndarray:
        """One column of a matrix returned by ``score_batch_with_features``, by name."""
        return X[:, self.engine.feature_names.index(name)]
