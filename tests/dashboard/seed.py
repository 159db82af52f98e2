"""A small seeded decisions database whose every figure the tests recompute in plain Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from payscore.dashboard.seed import label_for, synthetic_model, synthetic_rows
from payscore.store.labels import carry_over, recount
from payscore.store.rollup import add_decisions
from payscore.store.schema import dead_letters, fraud_labels, model_versions, scored_transactions

PROFILE_CUSTOMER = "C-PROFILE"
BURST_ROWS, BURST_SECONDS = 300, 40


@dataclass
class Seeded:
    """What was inserted."""

    now: datetime
    rows: list[dict[str, Any]]
    burst_end: datetime  # BURST_ROWS decisions in the BURST_SECONDS before this, late evening
    labels: dict[str, dict[str, Any]]
    dead: list[dict[str, Any]]
    model: dict[str, Any] = field(default_factory=dict)


def _special_rows(now: datetime) -> list[dict[str, Any]]:
    """Hand-made rows: literal '%'/'_' in reasons, a score of exactly 1, a profiled customer."""
    base = {
        "terminal_id": "T-SPECIAL",
        "currency": "EUR",
        "prediction": 1,
        "model_version": "special-1",
    }
    rows = []
    specials = [
        ("sp-pct", "C-X", "DECLINED", 1.0, "RULE_50%_OFF", 5),
        ("sp-und", "C-X", "REVIEW", 0.55, "RULE_A_B", 6),
        ("sp-plain", "C-X", "REVIEW", 0.6, "RULE_AxB", 7),
    ]
    for tx, customer, status, score, reasons, minutes_ago in specials:
        scored = now - timedelta(minutes=minutes_ago, seconds=0.25)
        rows.append(
            {
                **base,
                "transaction_id": tx,
                "customer_id": customer,
                "amount": 1500.0,
                "event_time": datetime(2018, 4, 2, 12, minutes_ago),
                "received_at": scored - timedelta(milliseconds=30),
                "scored_at": scored,
                "score": score,
                "status": status,
                "reason_codes": reasons,
            }
        )
    # A customer with a known history: 9 payments a day apart, one 5 hours before the end,
    # then 3 in the last hour.
    amounts = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 400, 410, 420]
    last = datetime(2018, 5, 20, 12, 0, 0)
    times = [last - timedelta(days=12 - i) for i in range(9)] + [last - timedelta(hours=5)]
    times += [last - timedelta(minutes=40), last - timedelta(minutes=20), last]
    for i, (amount, event_time) in enumerate(zip(amounts, times, strict=True)):
        scored = now - timedelta(minutes=50 - i, seconds=0.5)
        rows.append(
            {
                **base,
                "transaction_id": f"sp-prof-{i:02d}",
                "customer_id": PROFILE_CUSTOMER,
                "terminal_id": "T-PROFILE",
                "amount": float(amount),
                "event_time": event_time,
                "received_at": scored - timedelta(milliseconds=10 + i),
                "scored_at": scored,
                "score": 0.1 if i < 10 else 0.3,
                "prediction": 0,
                "status": "APPROVED" if i < 10 else "REVIEW",
                "reason_codes": "" if i < 10 else "VELOCITY_1H",
            }
        )
    return rows


def seed_small(engine: Engine, now: datetime, n: int = 1_200) -> Seeded:
    """``n`` synthetic decisions over the last 3 hours (some older), the special rows, and a
    burst of decisions within one minute at 22:16 UTC ten days before (a demo run)."""
    rows = list(synthetic_rows(n, now=now, span_seconds=3 * 3600, seed=7, customers=40))
    rows += list(synthetic_rows(60, now=now - timedelta(days=3), span_seconds=3600, seed=8))
    burst_end = datetime.combine((now - timedelta(days=10)).date(), time(22, 16, 45))
    rows += list(synthetic_rows(BURST_ROWS, now=burst_end, span_seconds=BURST_SECONDS, seed=9))
    rows += _special_rows(now)
    labels = [lab for lab in map(label_for, rows) if lab is not None]
    dead = [
        {
            "source_topic": "payments",
            "source_partition": 0,
            "source_offset": i,
            "error_kind": "json",
            "error_message": "bad",
            "attempt": 1,
            "created_at": now - timedelta(minutes=7 * i + 1),
        }
        for i in range(30)
    ]
    model = synthetic_model(now, seed=7)
    fractional = next(r for r in rows if r["scored_at"].microsecond)
    with engine.begin() as conn:
        conn.execute(insert(scored_transactions), rows)
        add_decisions(conn, rows)
        conn.execute(insert(fraud_labels), labels)
        recount(conn, [lab["transaction_id"] for lab in labels])  # the rollup's fraud counts
        carry_over(conn)  # each seeded label is also its one event
        conn.execute(insert(dead_letters), dead)
        conn.execute(insert(model_versions).values(**model))
        probe = conn.execute(
            select(scored_transactions.c.scored_at).where(
                scored_transactions.c.transaction_id == fractional["transaction_id"]
            )
        ).scalar_one()
    # Latency figures need sub-second times: the schema keeps microseconds (DATETIME(6)).
    assert probe == fractional["scored_at"], probe
    return Seeded(now, rows, burst_end, {lab["transaction_id"]: lab for lab in labels}, dead, model)
