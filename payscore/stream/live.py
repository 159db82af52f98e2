"""Changes picked up while ``consume`` runs, without a restart.

At a batch boundary, at most every ``policy_poll_seconds``, each pickup reads a cheap version
(the stored policy version: one indexed read) and, only if it changed, loads and checks the new
thing and swaps it in. The consumer decides a whole batch between two boundaries, so one batch
is decided under one policy version. A pickup that cannot read the database keeps what it has
(the last policy) and tries again at the next poll; one whose new version is unusable logs why
and keeps the last good one until the version changes again.

The model is a second pickup beside the policy: the registry's champion (``payscore models
promote`` / ``rollback``). Its new artifact is loaded and checked as at start (on a thread,
once the consumer runs), then swapped into the Scorer at a boundary with the model's own
thresholds; the feature engine, and so every customer's and terminal's history, carries over.
A model that needs features or a label delay the running engine lacks is refused. With no
champion registered, ``model_path`` stays in use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from payscore.config import Settings
from payscore.core.decision import Policy, Thresholds
from payscore.core.policy import live_policy
from payscore.core.scoring import Scorer, label_delay_days
from payscore.errors import PayscoreError, ServiceUnavailable
from payscore.store.initdb import upgrade
from payscore.store.policy import PolicyStore

if TYPE_CHECKING:
    from payscore.core.model import ModelArtifact
    from payscore.store.writer import DecisionWriter

log = logging.getLogger(__name__)


class Pickup(Protocol):
    """One thing a running consumer can take up: its version, loading it, applying it."""

    name: str

    def version(self) -> Hashable: ...

    def load(self, version: Hashable) -> Any: ...

    def apply(self, loaded: Any) -> None: ...


class PolicyPickup:
    """The stock policy from settings plus the enabled stored rules, with their lists."""

    name = "policy"

    def __init__(self, store: PolicyStore, base: Policy, scorer: Scorer) -> None:
        self.store = store
        self.base = base  # thresholds and stock rules, from settings and the model
        self.scorer = scorer

    def version(self) -> Hashable:
        return self.store.version()

    def load(self, version: Hashable) -> Policy:
        loaded = self.store.load()  # may be newer than ``version``: it is one consistent read
        policy = live_policy(self.base, loaded.rules, loaded.version)
        have = set(self.scorer.engine.feature_names)
        missing = [name for name in policy.required_features() if name not in have]
        if missing:
            raise PayscoreError(
                f"the feature engine does not compute {', '.join(missing)} (docs/rules.md)"
            )
        return policy

    def apply(self, loaded: Policy) -> None:
        self.scorer.policy = loaded


@dataclass(frozen=True)
class LoadedModel:
    """A checked champion, ready to swap in: its artifact and the thresholds it decides with."""

    version: str
    artifact: ModelArtifact
    thresholds: Thresholds


class ModelPickup:
    """The registry's champion; none registered keeps the model the consumer started with.

    With ``background`` (set once the consumer runs) a new champion is loaded and checked on a
    thread while batches go on under the current model; the pickup reports the new version
    only when it is ready, so the boundary that applies it only swaps references.
    """

    name = "model"
    role = "champion"

    def __init__(
        self,
        db: Engine,
        settings: Settings,
        scorer: Scorer,
        policy: PolicyPickup,
        record: Callable[[ModelArtifact], None] = lambda artifact: None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.scorer = scorer
        self.policy = policy  # its base policy takes the new model's thresholds
        self.record = record  # adds the version to ``model_versions``
        self.background = False
        self._shown: Hashable = None  # the version last reported
        self._ready: tuple[str, LoadedModel | PayscoreError] | None = None
        self._loading: threading.Thread | None = None
        self._refused: str | None = None  # not loaded again until the champion changes

    def in_use(self) -> str | None:
        return self.scorer.model_version

    def version(self) -> Hashable:
        from payscore.store.registry import holder

        found = holder(self.db, self.role)
        if found is not None and found.version != self._refused:
            self._refused = None  # the holder changed: a refused version may come back
        if found is None or found.version in (self.in_use(), self._refused):
            self._shown = None if found is None else found.version
        elif self._ready is not None and self._ready[0] == found.version:
            self._shown = found.version
        elif not self.background:
            self._ready = (found.version, self._prepare(found.version, found.artifact_path))
            self._shown = found.version
        elif self._loading is None or not self._loading.is_alive():
            args = (found.version, found.artifact_path)
            self._loading = threading.Thread(target=self._prepare_later, args=args, daemon=True)
            self._loading.start()
        return self._shown

    def load(self, version: Hashable) -> LoadedModel | None:
        ready, self._ready = self._ready, None
        if ready is None or ready[0] != version:
            return None  # nothing promoted yet, or the champion is the model in use
        if isinstance(ready[1], PayscoreError):
            if not isinstance(ready[1], ServiceUnavailable):  # that one: the next poll retries
                self._refused = ready[0]
            raise ready[1]
        return ready[1]

    def _prepare_later(self, version: str, path: str) -> None:
        self._ready = (version, self._prepare(version, path))

    def _prepare(self, version: str, path: str) -> LoadedModel | PayscoreError:
        try:
            return self._checked(version, path)
        except PayscoreError as e:
            return e
        except Exception as e:  # an artifact that breaks the load must not break the loop
            return PayscoreError(f"{type(e).__name__}: {e}")

    def _checked(self, version: str, path: str) -> LoadedModel:
        from payscore.core.model import load_artifact

        artifact = load_artifact(path, self.settings)  # ModelError: one line
        if artifact.version != version:
            raise PayscoreError(f"the file {path} now holds model {artifact.version}")
        engine = self.scorer.engine
        missing = [n for n in artifact.feature_names if n not in engine.feature_names]
        if missing:
            raise PayscoreError(f"it needs features the engine lacks: {', '.join(missing)}")
        delay = label_delay_days(artifact)
        if delay != engine.label_delay_days:
            raise PayscoreError(
                f"it was trained with a {delay}-day label delay, the engine runs with "
                f"{engine.label_delay_days}; restart the consumer to use it"
            )
        s = self.settings
        thresholds = Thresholds.resolve(
            artifact.metadata.get("thresholds"), s.review_threshold, s.decline_threshold
        )
        artifact.warm_up()
        self.record(artifact)
        return LoadedModel(artifact.version, artifact, thresholds)

    def apply(self, loaded: LoadedModel | None) -> None:
        if loaded is None:
            return
        self.scorer.artifact = loaded.artifact
        self.scorer.policy = replace(self.scorer.policy, thresholds=loaded.thresholds)
        self.policy.base = replace(self.policy.base, thresholds=loaded.thresholds)


class ChallengerPickup(ModelPickup):
    """The registry's challenger: scored beside the champion on the same engine, never
    deciding (``Scorer.challenger``); none set (or promoted to champion) stops the shadow."""

    name = "challenger"
    role = "challenger"

    def in_use(self) -> str | None:
        challenger = self.scorer.challenger
        return None if challenger is None else challenger.model_version

    def apply(self, loaded: LoadedModel | None) -> None:
        scorer = self.scorer
        if loaded is not None:
            policy = replace(scorer.policy, thresholds=loaded.thresholds)
            scorer.challenger = Scorer(loaded.artifact, scorer.engine, policy)
        elif self._shown is None:
            scorer.challenger = None


class LiveUpdates:
    """Polls its pickups at batch boundaries; never raises into the consume loop."""

    def __init__(
        self,
        pickups: Sequence[Pickup],
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pickups = list(pickups)
        self.poll_s = poll_s
        self.clock = clock
        self.applied: dict[str, Hashable] = {}  # pickup name -> version in use
        self._seen: dict[str, Hashable] = {}  # pickup name -> last version looked at
        self._down: set[str] = set()
        self._checked = -float("inf")

    def at_batch_boundary(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._checked < self.poll_s:
            return
        self._checked = now
        for pickup in self.pickups:
            self._check(pickup)

    def _check(self, pickup: Pickup) -> None:
        name = pickup.name
        try:
            version = pickup.version()
            if name in self._seen and version == self._seen[name]:
                self._up(name)
                return
            loaded = pickup.load(version)
        except ServiceUnavailable as e:
            if name not in self._down:
                self._down.add(name)
                log.warning("cannot read the %s (%s); keeping the last one", name, e)
            return
        except PayscoreError as e:
            self._up(name)
            self._seen[name] = version
            log.error(
                "%s version %s refused (%s); keeping version %s",
                name,
                version,
                e,
                self.applied.get(name),
            )
            return
        self._up(name)
        self._seen[name] = version
        pickup.apply(loaded)
        applied = getattr(loaded, "version", version)
        if self.applied.get(name) != applied:
            log.info("%s version %s in use", name, applied)
        self.applied[name] = applied

    def _up(self, name: str) -> None:
        if name in self._down:
            self._down.discard(name)
            log.info("the %s can be read again", name)


def start_live_updates(
    settings: Settings, db: Engine, scorer: Scorer, writer: DecisionWriter | None = None
) -> LiveUpdates:
    """Upgrade an older schema if needed, load the stored policy and the champion model now,
    and poll both from then on."""
    report = upgrade(db)
    if report is not None:
        log.info(
            "upgraded the schema: tables %s, columns %s",
            ", ".join(report.created) or "none",
            ", ".join(report.columns_added) or "none",
        )
    from payscore.pipeline import register_model

    policy = PolicyPickup(PolicyStore(db), scorer.policy, scorer)
    record = (lambda artifact: None) if writer is None else (lambda a: register_model(writer, a))
    model = ModelPickup(db, settings, scorer, policy, record)
    challenger = ChallengerPickup(db, settings, scorer, policy)
    live = LiveUpdates([policy, model, challenger], settings.policy_poll_seconds)
    live.at_batch_boundary(force=True)  # a registered champion decides from the first batch
    model.background = challenger.background = True
    return live
