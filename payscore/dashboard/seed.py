"""Synthetic decisions for tests, demos and the 1M-row dashboard benchmark.

Rows are deterministic for a given seed and spread evenly in decision time over the span that
ends at ``now``; event times sit in 2018 like the handbook's simulated world.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from payscore.dashboard.figures import utc_now
from payscore.store.labels import recount
from payscore.store.rollup import add_decisions
from payscore.store.schema import (
    dead_letters,
    fraud_labels,
    label_events,
    model_versions,
    scored_transactions,
)

REVIEW_AT, DECLINE_AT = 0.5, 0.8
MODEL_VERSION = "synthetic-1"
EVENT_EPOCH = datetime(2018, 4, 1)


@dataclass(frozen=True)
class SeedSummary:
    decisions: int
    labels: int
    dead_letters: int


def synthetic_rows(
    n: int,
    *,
    now: datetime,
    span_seconds: float,
    seed: int = 0,
    customers: int = 5_000,
    terminals: int = 10_000,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Rows ``start .. n-1`` of a synthetic decision log, oldest decision first."""
    rng = random.Random(seed * 1_000_003 + start)
    step = span_seconds / max(n, 1)
    first = now - timedelta(seconds=span_seconds)
    for i in range(start, n):
        scored_at = first + timedelta(seconds=(i + 0.5) * step)
        latency = timedelta(microseconds=rng.randint(2_000, 80_000))
        customer = rng.randrange(customers)
        # Mostly low scores, with a tail of suspicious ones so every status shows up.
        high = rng.random() < 0.04
        score = round(rng.uniform(0.45, 1.0) if high else rng.betavariate(0.6, 6.0), 6)
        reasons = []
        if score >= REVIEW_AT:
            reasons.append("MODEL_SCORE")
        if rng.random() < 0.02:
            reasons.append("VELOCITY_1H")
        amount = round(rng.lognormvariate(3.5, 0.8), 2) + 0.01
        if amount > 1000:
            reasons.append("AMOUNT_HIGH")
        status = "DECLINED" if score >= DECLINE_AT else "REVIEW" if reasons else "APPROVED"
        yield {
            "transaction_id": f"tx-{seed}-{i:09d}",
            "customer_id": f"C{customer:05d}",
            "terminal_id": f"T{rng.randrange(terminals):05d}",
            "amount": amount,
            "currency": "EUR",
            "event_time": EVENT_EPOCH + timedelta(seconds=i * 9 + rng.randrange(9)),
            "received_at": scored_at - latency,
            "scored_at": scored_at,
            "score": score,
            "prediction": int(status != "APPROVED"),
            "status": status,
            "reason_codes": ",".join(reasons),
            "model_version": MODEL_VERSION,
        }


def label_for(row: dict[str, Any]) -> dict[str, Any] | None:
    """A label for some decisions: most declines, one approval in a hundred, some reviews."""
    digit = zlib.crc32(row["transaction_id"].encode()) % 100  # stable across runs
    source = "stream"  # a chargeback from the labels topic
    if row["status"] == "DECLINED" and digit < 60:
        is_fraud = True
    elif row["status"] == "APPROVED" and digit == 7:
        is_fraud = True  # an approval charged back later
    elif row["status"] == "REVIEW" and digit < 30:
        is_fraud, source = digit % 3 == 0, "analyst"  # already reviewed
    else:
        return None
    return {
        "transaction_id": row["transaction_id"],
        "is_fraud": is_fraud,
        "known_at": row["scored_at"] + timedelta(hours=1),
        "source": source,
        "labelled_by": "seed" if source == "analyst" else None,
        "note": None,
    }


def seed_database(
    engine: Engine,
    n: int,
    *,
    now: datetime | None = None,
    span_seconds: float = 30 * 86400,
    seed: int = 0,
    batch_size: int = 10_000,
    dead_letter_every: int = 500,
) -> SeedSummary:
    """Insert ``n`` synthetic decisions (with labels, dead letters and a model) in batches.

    The decisions and their fraud labels are counted into ``decision_rollup`` in the same
    transactions, exactly as the pipeline's writers do.
    """
    now = now or utc_now()
    batch: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    totals = [0, 0, 0]

    def flush() -> None:
        with engine.begin() as conn:
            for table, rows, slot in (
                (scored_transactions, batch, 0),
                (fraud_labels, labels, 1),
                (dead_letters, dead, 2),
            ):
                if rows:
                    conn.execute(insert(table), rows)
                    if table is scored_transactions:
                        add_decisions(conn, rows)  # as DecisionWriter does
                    if table is fraud_labels:  # each counting label is also its one event
                        conn.execute(
                            insert(label_events),
                            [{**r, "recorded_at": r["known_at"]} for r in rows],
                        )
                        recount(conn, [r["transaction_id"] for r in rows])  # rollup frauds
                    totals[slot] += len(rows)
                    rows.clear()

    for i, row in enumerate(synthetic_rows(n, now=now, span_seconds=span_seconds, seed=seed)):
        batch.append(row)
        label = label_for(row)
        if label is not None:
            labels.append(label)
        if dead_letter_every and i % dead_letter_every == 0:
            dead.append(_dead_letter(seed, i, row["scored_at"]))
        if len(batch) >= batch_size:
            flush()
    flush()
    with engine.begin() as conn:
        conn.execute(insert(model_versions).values(**synthetic_model(now, seed)))
    return SeedSummary(*totals)


def synthetic_model(now: datetime, seed: int = 0) -> dict[str, Any]:
    """A model_versions row with the metadata keys the ML helper's artifacts carry."""
    meta = {
        "model_type": "RandomForestClassifier",
        "training_period": "2018-07-25/2018-07-31",
        "metrics": {"auc_roc": 0.867, "average_precision": 0.658, "card_precision_at_100": 0.287},
        "thresholds": {"review": REVIEW_AT, "decline": DECLINE_AT},
    }
    return {
        "version": f"{MODEL_VERSION}-{seed}",
        "trained_at": now - timedelta(days=2),
        "activated_at": now - timedelta(days=1),
        "metadata_json": json.dumps(meta),
    }


def _dead_letter(seed: int, i: int, when: datetime) -> dict[str, Any]:
    return {
        "source_topic": "payments",
        "source_partition": seed,
        "source_offset": i,
        "error_kind": "json" if i % 2 else "schema",
        "error_message": "synthetic bad message",
        "attempt": 1,
        "created_at": when,
    }
