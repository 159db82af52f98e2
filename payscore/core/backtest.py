"""Backtesting: score a file of payments with the production Scorer, offline.

Input is read by ``paymentfile`` (the reader ``train --data`` and ``produce --from`` use too):
rejected rows are reported with their line number instead of stopping the run. Valid payments
are scored in event-time order (stable), in batches, by ``Scorer.score_batch``; each label
enters the engine just before its payment's batch, known ``label_delay_days`` after it.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payscore.core.decision import STATUSES, Decision
from payscore.core.paymentfile import (
    LABEL_COLUMN,
    MAX_INPUT_BYTES,
    PaymentFile,
    Progress,
    RejectedRow,
    check_file,
    parse_label,
)
from payscore.core.schema import Payment
from payscore.errors import InputError

if TYPE_CHECKING:
    from payscore.core.explain import Reason
    from payscore.core.scoring import Scorer

OUTPUT_HEADER = ("transaction_id", "score", "status", "reason_codes", "explanation")


@dataclass
class InputFile:
    """What a backtest input file held: valid payments, their labels, and rejected rows."""

    payments: list[Payment] = field(default_factory=list)
    labels: dict[str, bool] = field(default_factory=dict)
    rejected: list[RejectedRow] = field(default_factory=list)


def read_input(
    path: str | Path, max_bytes: int = MAX_INPUT_BYTES, progress: Progress | None = None
) -> InputFile:
    """Read and validate every row of a CSV or JSON-lines file (``paymentfile``), streaming."""
    source = PaymentFile(path, max_bytes, progress)
    out = InputFile(rejected=source.rejected)
    for row in source:
        out.payments.append(row.payment)
        if row.is_fraud is not None:
            out.labels[row.payment.transaction_id] = row.is_fraud
    return out


def read_labels(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> dict[str, bool]:
    """A labels CSV with columns transaction_id and is_fraud."""
    p = check_file(path, max_bytes)
    labels: dict[str, bool] = {}
    with p.open("r", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "transaction_id" not in header or LABEL_COLUMN not in header:
            raise InputError(f"{p}: a labels file needs the columns transaction_id,is_fraud")
        try:
            for row in reader:
                flag = parse_label(row.get(LABEL_COLUMN))
                if flag is None:
                    raise InputError(f"{p}, line {reader.line_num}: is_fraud must be 0 or 1")
                labels[row["transaction_id"]] = flag
        except csv.Error as e:
            raise InputError(f"{p}, line {reader.line_num}: malformed CSV: {e}") from e
    return labels


def event_order(payments: Sequence[Payment]) -> list[Payment]:
    """Payments sorted by event time; ties keep their input order (the sort is stable)."""
    return sorted(payments, key=lambda p: p.event_time)


def run_backtest(
    scorer: Scorer,
    payments: Sequence[Payment],
    batch_size: int = 500,
    labels: Mapping[str, bool] | None = None,
    progress: Progress | None = None,
    explained: dict[str, list[Reason]] | None = None,
    top: int = 3,
) -> list[Decision]:
    """Score payments (already in event-time order) in batches, as the consumer would.

    Each batch's labels enter the engine just before the batch, known ``label_delay_days``
    after their payment; the engine uses a label only for payments at or after that time. Fed
    this way the engine holds at most one batch of labels for payments it has not seen, so no
    label is lost to its cap on such labels, however long the file.

    With ``explained`` (a dict to fill), each payment's ``top`` reasons are added to it by
    transaction id (``Scorer.decide_and_explain``: the consumer's explanation, from the same
    tree walk that scores).
    """
    delay = timedelta(days=scorer.engine.label_delay_days).total_seconds()
    add_label = scorer.engine.add_label
    decisions: list[Decision] = []
    n = len(payments)
    for start in range(0, n, batch_size):
        batch = payments[start : start + batch_size]
        if labels:
            for p in batch:
                flag = labels.get(p.transaction_id)
                if flag is not None:
                    add_label(p.transaction_id, flag, p.event_time.timestamp() + delay)
        if explained is None:
            decisions.extend(scorer.score_batch(batch))
        else:
            X = scorer.engine.transform(batch)
            ids = [p.transaction_id for p in batch]
            decided = scorer.decide_and_explain(ids, X, batch, top)
            if decided.reasons is not None:
                explained.update(zip(ids, decided.reasons, strict=True))
            decisions.extend(decided.decisions)
        if progress is not None:
            progress("scoring", len(decisions), n)
    return decisions


def explanation_json(reasons: Sequence[Reason]) -> str:
    """One payment's reasons as a JSON list of {feature, value, contribution, text}, largest
    contribution first; a missing value is null. The ``explanation`` column of the output."""
    return json.dumps(
        [
            {
                "feature": r.feature,
                "value": None if math.isnan(r.value) else r.value,
                "contribution": round(r.contribution, 6),
                "text": r.text,
            }
            for r in reasons
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def write_decisions(
    path: str | Path,
    decisions: Sequence[Decision],
    explained: Mapping[str, Sequence[Reason]] | None = None,
) -> int:
    """CSV of transaction_id, score, status, reason_codes (comma-separated, quoted) and
    explanation (``explanation_json``; empty for a payment that was not explained)."""
    explained = explained or {}
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(OUTPUT_HEADER)
            for d in decisions:
                why = explained.get(d.transaction_id)
                writer.writerow(
                    (
                        d.transaction_id,
                        f"{d.score:.6f}",
                        d.status,
                        ",".join(d.reasons),
                        "" if why is None else explanation_json(why),
                    )
                )
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    return len(decisions)


def status_confusion(
    decisions: Sequence[Decision], labels: Mapping[str, bool]
) -> dict[str, dict[bool, int]]:
    """Per status, how many labelled payments were fraud (True) and genuine (False)."""
    counts = Counter(
        (d.status, labels[d.transaction_id]) for d in decisions if d.transaction_id in labels
    )
    return {s: {True: counts[(s, True)], False: counts[(s, False)]} for s in STATUSES}


def training_dates(metadata: dict[str, Any]) -> tuple[date, date] | None:
    """First and last date of the payments the model learned from or was tuned on (its
    training and validation periods), from the artifact's metadata; None if unknown."""
    period = metadata.get("training_period") or {}
    try:
        first = period["train"][0]
        last = (period.get("validation") or period["train"])[-1]
        return date.fromisoformat(str(first)[:10]), date.fromisoformat(str(last)[:10])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Quality:
    """Metrics over the labelled payments of a period, and what they were computed on."""

    decisions: list[Decision]  # the labelled decisions in the period
    first: date | None  # event date (UTC) of the earliest of them
    last: date | None
    metrics: dict[str, float] | None  # None when they cannot be computed (see ``why_not``)
    why_not: str | None
    in_training: int  # how many of them fall in the model's training period


def quality(
    decisions: Sequence[Decision],
    payments: Sequence[Payment],
    labels: Mapping[str, bool],
    since: date | None = None,
    until: date | None = None,
    training: tuple[date, date] | None = None,
) -> Quality:
    """AUC ROC, average precision and CP@100 over the labelled payments whose event date
    (UTC) is within ``since .. until`` (inclusive; open when None). Every such payment counts:
    none is dropped for a card already known compromised (the handbook's test filter).
    ``training`` (first, last date) counts the payments that the model may have learned from.
    """
    import numpy as np  # here: the score command's --help needs neither

    from payscore.core.metrics import evaluate

    by_id = {p.transaction_id: p for p in payments}
    chosen: list[Decision] = []
    rows: list[Payment] = []
    for d in decisions:
        if d.transaction_id not in labels:
            continue
        p = by_id[d.transaction_id]
        day = p.event_time.date()
        if (since is None or day >= since) and (until is None or day <= until):
            chosen.append(d)
            rows.append(p)
    if not chosen:
        return Quality([], None, None, None, "no labelled payments in the period", 0)
    days = [p.event_time.date() for p in rows]
    in_training = 0
    if training is not None:
        in_training = sum(training[0] <= day <= training[1] for day in days)
    try:
        metrics = evaluate(
            np.array([labels[d.transaction_id] for d in chosen], dtype=np.int64),
            np.array([d.score for d in chosen], dtype=np.float64),
            np.array([day.toordinal() for day in days]),
            np.array([p.customer_id for p in rows], dtype=object),
        )
    except ValueError as e:  # e.g. no fraud at all among the labelled payments
        return Quality(chosen, min(days), max(days), None, str(e), in_training)
    return Quality(chosen, min(days), max(days), metrics, None, in_training)
