"""The batch pipeline shared by ``payscore consume`` and ``payscore demo``.

Raw messages in, a prepared batch out (validate -> drop duplicates -> Scorer), then one
database transaction (DecisionWriter). Kafka stays outside: a message is anything with
``topic``, ``partition``, ``offset``, ``key``, ``value`` (kafka-python records qualify), so the
demo feeds the very same code from the simulator.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from payscore.config import Settings
from payscore.core.decision import APPROVED, Decision
from payscore.core.drift import BatchBins
from payscore.core.explain import explanation_text
from payscore.core.features import RATIO_FEATURE, Label
from payscore.core.model import ModelArtifact
from payscore.core.schema import InvalidMessage, Payment, parse_payment
from payscore.core.scoring import Scorer
from payscore.store.labels import analyst_labelled
from payscore.store.writer import (
    BatchRequest,
    DeadLetterRecord,
    DecisionWriter,
    DuplicateRecord,
    WriteResult,
    utcnow,
)

log = logging.getLogger(__name__)

SCORING_ERROR = "scoring_error"


class Message(Protocol):
    """The parts of a consumed record the pipeline reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class RawMessage:
    """A message not from Kafka (the demo, tests); same attribute names as a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A message that goes to the dead-letter topic, with why."""

    message: Any  # the original record, for the dead-letter envelope
    kind: str
    field: str | None
    reason: str
    record: DeadLetterRecord


@dataclass
class PreparedBatch:
    """A scored batch, ready to be written in one transaction (and retried as is)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    decided: list[tuple[Payment, Decision]] = field(default_factory=list)
    duplicates: list[DuplicateRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    staged: Any = None  # the writer's handle for this batch (``DecisionWriter.stage_batch``)
    drift: Any = None  # the decided rows' bins in the champion's reference (core/drift.py)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, d in self.decided:
            counts[d.status] = counts.get(d.status, 0) + 1
        return counts


class Pipeline:
    """Validate, de-duplicate, score and write batches; one Scorer, one writer, one group."""

    def __init__(
        self,
        scorer: Scorer,
        writer: DecisionWriter,
        group: str,
        attempt_of: Callable[[Any], int] | None = None,
        labels_topic: str | None = None,
    ) -> None:
        self.scorer = scorer
        self.labels_topic = labels_topic
        self.writer = writer
        self.group = group
        self._attempt_of = attempt_of or (lambda _message: 1)
        # Transaction ids of batches prepared but not yet written: a pipelined caller prepares
        # batch N+1 while N is being written, and N's ids must already count as known.
        self._unwritten: set[str] = set()
        self._unwritten_lock = threading.Lock()
        self._shadow: dict[str, Decision] = {}  # the challenger's verdicts on this batch
        self.drift = BatchBins()  # counted with the batch's decisions (store/drift.py)
        self._explained: dict[str, str] = {}  # this batch's explanations (explanation_text)
        self._ratios: dict[str, float] = {}  # this batch's amount ratios (RATIO_FEATURE)

    def prepare(
        self, messages: Sequence[Any], received_at: Sequence[datetime] | datetime | None = None
    ) -> PreparedBatch:
        """Everything but the write. Reads the database (known ids; analysts' verdicts when
        labels came) before any state changes, so a ``ServiceUnavailable`` here can simply be
        retried."""
        now = utcnow()
        if received_at is None or isinstance(received_at, datetime):
            received = [received_at or now] * len(messages)
        else:
            received = list(received_at)
        batch = PreparedBatch(size=len(messages))
        for m in messages:
            key = (self.group, m.topic, m.partition)
            batch.offsets[key] = max(batch.offsets.get(key, 0), m.offset + 1)

        parsed: list[tuple[Any, Payment, datetime]] = []
        taken: list[Label] = []
        for m, at in zip(messages, received, strict=True):
            if self.labels_topic is not None and m.topic == self.labels_topic:
                self._take_label(m, batch, taken)
                continue
            result = parse_payment(m.value if m.value is not None else b"")
            if isinstance(result, InvalidMessage):
                batch.rejected.append(self._reject(m, result.kind, result.field, result.message))
                continue
            parsed.append((m, result, at))

        with self._unwritten_lock:
            unwritten = set(self._unwritten)
        ids = [p.transaction_id for _, p, _ in parsed]
        known = self.writer.existing_ids(i for i in ids if i not in unwritten)
        known |= unwritten
        if taken:
            # An analyst's verdict outranks a labels-topic label (store/labels.py), so the
            # features must not take one for a payment an analyst has decided.
            held = analyst_labelled(self.writer.lookup, (lb.transaction_id for lb in taken))
            self.scorer.engine.add_labels(lb for lb in taken if lb.transaction_id not in held)
        valid: list[tuple[Any, Payment, datetime]] = []
        for m, p, at in parsed:
            if p.transaction_id in known:
                batch.duplicates.append(
                    DuplicateRecord(p.transaction_id, m.topic, m.partition, m.offset, now)
                )
            else:
                known.add(p.transaction_id)
                valid.append((m, p, at))

        self._shadow.clear()
        self._explained.clear()
        self._ratios.clear()
        decisions = self._score(valid, batch)
        scored_at = utcnow()
        for (m, p, at), decision in zip(valid, decisions, strict=True):
            if decision is None:
                continue
            batch.decided.append((p, decision))
            batch.rows.append(decision_row(p, decision, m, at, scored_at))
            batch.rows[-1]["explanation"] = self._explained.get(p.transaction_id)
            batch.rows[-1]["amount_ratio"] = self._ratios.get(p.transaction_id)
            if self.scorer.challenger is not None:  # set or cleared only between batches
                batch.rows[-1].update(shadow_columns(self._shadow.get(p.transaction_id)))
        batch.drift = self.drift.take([p.transaction_id for p, _ in batch.decided])
        self._hold([p.transaction_id for p, _ in batch.decided])
        # Staged now, on the thread that prepared it: a writer in another process receives
        # the batch while it is still writing the previous one (see store/process.py).
        self._stage(batch)
        return batch

    def write(self, batch: PreparedBatch) -> WriteResult:
        """One transaction for the whole batch (decisions, duplicates, dead letters, offsets).

        Safe to repeat, even after a success: the stored offsets fence what was written.
        """
        if batch.staged is None:
            self._stage(batch)
        result = self.writer.write_staged(batch.staged)
        self.release(batch)
        return result

    def _stage(self, batch: PreparedBatch) -> None:
        request = BatchRequest(
            batch.rows,
            batch.duplicates,
            [r.record for r in batch.rejected],
            batch.offsets,
            batch.labels,
            drift=batch.drift,
        )
        batch.staged = self.writer.stage_batch(request)

    def release(self, batch: PreparedBatch) -> None:
        """Forget a batch's ids as "being written" (after its write, or when abandoning it)."""
        with self._unwritten_lock:
            self._unwritten.difference_update(p.transaction_id for p, _ in batch.decided)
        if batch.staged is not None:
            self.writer.drop_staged(batch.staged)
            batch.staged = None

    def _hold(self, ids: Iterable[str]) -> None:
        with self._unwritten_lock:
            self._unwritten.update(ids)

    def process(self, messages: Sequence[Any]) -> tuple[PreparedBatch, WriteResult]:
        """prepare + write, for callers with no dead-letter topic to feed (the demo)."""
        batch = self.prepare(messages)
        return batch, self.write(batch)

    # -- internals ------------------------------------------------------------------------

    def _score(
        self, valid: list[tuple[Any, Payment, datetime]], batch: PreparedBatch
    ) -> list[Decision | None]:
        """Features payment by payment, then model and rules for the whole matrix.

        Each payment enters the feature state exactly once: a payment whose features fail is
        dead-lettered alone; if the model or the rules fail on the matrix, they are run row by
        row on the same feature rows, so only the poison row is lost (and nothing is added
        to the state twice, as scoring the payments again would).
        """
        if not valid:
            return []
        engine = self.scorer.engine
        ratio_at = engine.feature_names.index(RATIO_FEATURE)
        rows: list[list[float]] = []
        kept: list[int] = []
        out: list[Decision | None] = [None] * len(valid)
        for i, (m, p, _) in enumerate(valid):
            try:
                rows.append(engine.transform_one(p))
                kept.append(i)
                self._ratios[p.transaction_id] = rows[-1][ratio_at]
            except Exception as e:  # a feature bug must cost one message, not the stream
                self._scoring_failed(m, e, batch)
        if not kept:
            return out
        X = np.array(rows, dtype=np.float64)
        pays = [valid[i][1] for i in kept]
        ids = [p.transaction_id for p in pays]
        try:
            for i, d in zip(kept, self._decide(ids, X, pays), strict=True):
                out[i] = d
            return self._binned(ids, X, kept, out)
        except Exception as e:
            log.warning("scoring a batch of %d failed (%s); scoring row by row", len(kept), e)
        for j, i in enumerate(kept):
            try:
                out[i] = self._decide(ids[j : j + 1], X[j : j + 1], pays[j : j + 1])[0]
            except Exception as e:
                self._scoring_failed(valid[i][0], e, batch)
        return self._binned(ids, X, kept, out)

    def _binned(
        self, ids: list[str], X: np.ndarray, kept: list[int], out: list[Decision | None]
    ) -> list[Decision | None]:
        """The decided rows counted into the champion's drift bins (``core/drift.py``)."""
        done = [j for j, i in enumerate(kept) if out[i] is not None]
        scores = [out[kept[j]].score for j in done]  # type: ignore[union-attr]
        rows = X if len(done) == len(kept) else X[done]
        names = self.scorer.engine.feature_names
        try:
            self.drift.observe(self.scorer.artifact, names, [ids[j] for j in done], rows, scores)
        except Exception as e:  # drift is monitoring: it never costs a decision
            log.warning("drift bins failed on %d payments (%s); not counted", len(done), e)
        return out

    def _decide(self, ids: list[str], X: np.ndarray, payments: list[Payment]) -> list[Decision]:
        """Model and rules on feature rows: the second half of ``Scorer.score_batch``; the
        challenger's verdicts, if one is set, are kept for the rows (``_shadow``), and so are
        the explanations (``_explained``, ``Scorer.explain_top`` reasons each)."""
        decided = self.scorer.decide_and_explain(ids, X, payments, self.scorer.explain_top)
        try:
            shadow = self.scorer.shadow_rows(ids, X, payments, decided.fired)
        except Exception as e:  # the challenger never costs a decision
            log.warning(
                "the challenger failed on %d payments (%s); no shadow for them", len(ids), e
            )
            shadow = None
        for d in shadow or ():
            self._shadow[d.transaction_id] = d
        if decided.reasons is not None:
            texts = map(explanation_text, decided.reasons)
            self._explained.update(zip(ids, texts, strict=True))
        return decided.decisions

    def _scoring_failed(self, m: Any, error: Exception, batch: PreparedBatch) -> None:
        reason = f"{type(error).__name__}: {error}"
        log.warning("dead-lettering %s/%s@%s: %s", m.topic, m.partition, m.offset, reason)
        batch.rejected.append(self._reject(m, SCORING_ERROR, None, reason))

    def _take_label(self, m: Any, batch: PreparedBatch, taken: list[Label]) -> None:
        """A fraud label from the labels topic: for the engine (``taken``, once the database
        has said which payments an analyst decided) and for the label tables on write."""
        label = parse_label(m.value)
        if isinstance(label, str):
            batch.rejected.append(self._reject(m, "schema", None, label))
            return
        taken.append(label)
        batch.labels.append(
            {
                "transaction_id": label.transaction_id,
                "is_fraud": label.is_fraud,
                "known_at": label.known_at.replace(tzinfo=None),
                "kafka_topic": m.topic,
                "kafka_partition": m.partition,
                "kafka_offset": m.offset,
            }
        )

    def _reject(self, m: Any, kind: str, field_name: str | None, reason: str) -> Rejected:
        record = DeadLetterRecord(
            source_topic=m.topic,
            source_partition=m.partition,
            source_offset=m.offset,
            error_kind=kind,
            error_message=reason,
            attempt=self._attempt_of(m),
            created_at=utcnow(),
        )
        return Rejected(m, kind, field_name, reason, record)


def parse_label(raw: bytes | None) -> Label | str:
    """A labels-topic message ({"transaction_id", "is_fraud", "known_at"}) or why not."""
    if raw is None or len(raw) > 4096:
        return "label message is empty or too large"
    try:
        body = json.loads(raw)
        tx, fraud, known = body["transaction_id"], body["is_fraud"], body["known_at"]
        if not isinstance(tx, str) or not 0 < len(tx) <= 64 or not isinstance(fraud, bool):
            return "label needs a transaction_id string and an is_fraud boolean"
        at = datetime.fromisoformat(known)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        return f"unreadable label: {type(e).__name__}"
    if at.tzinfo is None:
        return "label known_at needs a UTC offset"
    return Label(tx, fraud, at.astimezone(timezone.utc))


def decision_row(
    p: Payment, d: Decision, m: Any, received_at: datetime, scored_at: datetime
) -> dict[str, Any]:
    """The ``scored_transactions`` row of one decision (times as naive UTC)."""
    return {
        "transaction_id": p.transaction_id,
        "customer_id": p.customer_id,
        "terminal_id": p.terminal_id,
        "amount": p.amount,
        "currency": p.currency,
        "event_time": p.event_time.replace(tzinfo=None),
        "received_at": received_at,
        "scored_at": scored_at,
        "score": d.score,
        "prediction": 0 if d.status == APPROVED else 1,
        "status": d.status,
        "reason_codes": ",".join(d.reasons)[:255],
        "model_version": d.model_version,
        "policy_version": d.policy_version,
        "channel": p.channel,
        "merchant_category": p.merchant_category,
        "country": p.country,
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
    }


def shadow_columns(d: Decision | None) -> dict[str, Any]:
    """The challenger's verdict beside a decision (``scored_transactions.challenger_*``)."""
    if d is None:
        return dict.fromkeys(("challenger_version", "challenger_score", "challenger_status"))
    return {
        "challenger_version": d.model_version,
        "challenger_score": d.score,
        "challenger_status": d.status,
    }


def build_scorer(settings: Settings, artifact: ModelArtifact) -> Scorer:
    """The Scorer for these settings (thresholds, rules, reasons per decision) with a fresh
    feature engine."""
    scorer = Scorer.from_settings_values(
        artifact,
        None,
        review_threshold=settings.review_threshold,
        decline_threshold=settings.decline_threshold,
        velocity_max_payments=settings.velocity_max_payments,
        velocity_window_seconds=settings.velocity_window_seconds,
        amount_review_limit=settings.amount_review_limit,
        amount_decline_limit=settings.amount_decline_limit,
    )
    scorer.explain_top = settings.explain_top_reasons
    if scorer.explain_top:
        from payscore.core import explain

        if explain.explainable(artifact):  # compile the one walk now, not on the first batch
            names = artifact.feature_names
            explain.scored_contributions(artifact, names, np.zeros((1, len(names))))
    return scorer


def register_model(writer: DecisionWriter, artifact: ModelArtifact) -> None:
    """Record the artifact in ``model_versions`` (first activation kept)."""
    trained = artifact.metadata.get("trained_at")
    try:
        trained_at = datetime.fromisoformat(trained).replace(tzinfo=None) if trained else None
    except (TypeError, ValueError):
        trained_at = None
    writer.register_model(
        artifact.version,
        trained_at or datetime(1970, 1, 1),
        json.dumps(artifact.metadata, default=str, sort_keys=True),
    )
