"""The dashboard's lookups: the review queue, a payment's labels, one customer's profile and
history, the model.

Point queries by key (not time-range figures), split from ``queries.py``; the same rules hold:
SQLAlchemy Core, bound parameters, bounded row sets.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Select, case, func, select

from payscore.dashboard.figures import STATUSES, CustomerProfile
from payscore.dashboard.queries import (
    DECISION_COLUMNS,
    FETCH_CAP,
    MAX_FILTER_CHARS,
    MAX_ROWS,
    _frame,
    fl,
    st,
)
from payscore.store.schema import label_events, model_versions

BACKLOG_CAP = 1_000  # the backlog figure reads '1,000+' beyond this
#: The review queue and a customer's history also show each decision's reasons, beside its
#: reason codes (where a wide table shows them without scrolling).
_CODES = DECISION_COLUMNS.index("reason_codes") + 1
EXPLAINED_COLUMNS = (*DECISION_COLUMNS[:_CODES], "explanation", *DECISION_COLUMNS[_CODES:])


def stmt_review_queue(limit: int = 100) -> Select:
    return (
        select(*(st.c[name] for name in EXPLAINED_COLUMNS))
        .select_from(st.outerjoin(fl, fl.c.transaction_id == st.c.transaction_id))
        .where(st.c.status == "REVIEW", fl.c.transaction_id.is_(None))
        .order_by(st.c.event_time, st.c.id)
        .limit(min(limit, MAX_ROWS))
    )


def stmt_review_backlog(cap: int = BACKLOG_CAP) -> Select:
    """Count unlabelled REVIEW decisions, stopping at ``cap`` so a huge backlog stays cheap."""
    waiting = (
        select(st.c.id)
        .select_from(st.outerjoin(fl, fl.c.transaction_id == st.c.transaction_id))
        .where(st.c.status == "REVIEW", fl.c.transaction_id.is_(None))
        .limit(cap)
        .subquery()
    )
    return select(func.count()).select_from(waiting)


LABEL_HISTORY_COLUMNS = ["recorded_at", "verdict", "source", "labelled_by", "known_at", "note"]
MAX_LABEL_EVENTS = 200


def stmt_label_history(transaction_id: str) -> Select:
    """Every label event of one payment, oldest first (``ix_label_events_tx``)."""
    ev = label_events.c
    return (
        select(ev.recorded_at, ev.is_fraud, ev.source, ev.labelled_by, ev.known_at, ev.note)
        .where(ev.transaction_id == transaction_id)
        .order_by(ev.id)
        .limit(MAX_LABEL_EVENTS)
    )


def stmt_counting_label(transaction_id: str) -> Select:
    return select(fl.c.is_fraud, fl.c.source, fl.c.labelled_by, fl.c.known_at).where(
        fl.c.transaction_id == transaction_id
    )


def label_history(conn: Connection, transaction_id: str) -> pd.DataFrame:
    """A payment's label events, oldest first, verdicts spelled out."""
    transaction_id = transaction_id.strip()[:MAX_FILTER_CHARS]
    rows = [
        (recorded, "fraud" if fraud else "legitimate", source, who, known, note)
        for recorded, fraud, source, who, known, note in conn.execute(
            stmt_label_history(transaction_id)
        )
    ]
    return pd.DataFrame(rows, columns=LABEL_HISTORY_COLUMNS)


def counting_label(conn: Connection, transaction_id: str) -> dict[str, Any] | None:
    """The label that counts for a payment (features, queue, fraud rate), or None."""
    transaction_id = transaction_id.strip()[:MAX_FILTER_CHARS]
    row = conn.execute(stmt_counting_label(transaction_id)).first()
    if row is None:
        return None
    return {
        "verdict": "fraud" if row.is_fraud else "legitimate",
        "source": row.source,
        "labelled_by": row.labelled_by,
        "known_at": row.known_at,
    }


def stmt_customer_stats(customer_id: str) -> Select:
    """Count, amount moments, first and last event time and the count of each status, in one
    pass over the customer's rows (a second pass for the statuses took as long again)."""
    amount = st.c.amount
    return select(
        func.count(),
        func.avg(amount),
        func.avg(amount * amount),
        func.min(st.c.event_time),
        func.max(st.c.event_time),
        *(func.sum(case((st.c.status == status, 1), else_=0)) for status in STATUSES),
    ).where(st.c.customer_id == customer_id)


def stmt_customer_history(customer_id: str, limit: int = 500) -> Select:
    return (
        select(*(st.c[name] for name in EXPLAINED_COLUMNS))
        .where(st.c.customer_id == customer_id)
        .order_by(st.c.event_time.desc(), st.c.id.desc())
        .limit(min(limit, FETCH_CAP))
    )


def review_queue(conn: Connection, limit: int = 100) -> pd.DataFrame:
    """Unlabelled REVIEW decisions, oldest (event time) first."""
    return _frame(conn.execute(stmt_review_queue(limit)).all(), EXPLAINED_COLUMNS)


def review_backlog(conn: Connection, cap: int = BACKLOG_CAP) -> int:
    """How many REVIEW decisions wait for a label, counted up to ``cap``."""
    return int(conn.execute(stmt_review_backlog(cap)).scalar_one())


def customer_profile(conn: Connection, customer_id: str) -> CustomerProfile | None:
    customer_id = customer_id.strip()[:MAX_FILTER_CHARS]
    n, mean, mean_sq, first, last, *by_status = conn.execute(stmt_customer_stats(customer_id)).one()
    if not n:
        return None
    mean, mean_sq = float(mean), float(mean_sq)
    # Window counts relative to the customer's own latest payment (event time), like features.
    recent = select(func.count()).where(st.c.customer_id == customer_id)
    last_hour = conn.execute(recent.where(st.c.event_time > last - timedelta(hours=1))).scalar_one()
    last_day = conn.execute(recent.where(st.c.event_time > last - timedelta(days=1))).scalar_one()
    statuses = {k: int(v) for k, v in zip(STATUSES, by_status, strict=True) if v}
    days = max((last - first).total_seconds() / 86400, 1.0)
    return CustomerProfile(
        customer_id=customer_id,
        payments=int(n),
        mean_amount=mean,
        std_amount=math.sqrt(max(mean_sq - mean * mean, 0.0)),
        first_event=first,
        last_event=last,
        usual_per_day=int(n) / days,
        last_hour=int(last_hour),
        last_day=int(last_day),
        statuses={str(k): int(v) for k, v in statuses.items()},
    )


def customer_history(conn: Connection, customer_id: str, limit: int = 500) -> pd.DataFrame:
    customer_id = customer_id.strip()[:MAX_FILTER_CHARS]
    rows = conn.execute(stmt_customer_history(customer_id, limit)).all()
    return _frame(rows, EXPLAINED_COLUMNS)


def latest_model(conn: Connection) -> dict[str, Any] | None:
    """The most recently activated model version with its metadata, or None."""
    row = conn.execute(
        select(model_versions).order_by(model_versions.c.activated_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    try:
        meta = json.loads(row.metadata_json)
    except ValueError:
        meta = {}
    return {
        "version": row.version,
        "trained_at": row.trained_at,
        "activated_at": row.activated_at,
        "metadata": meta if isinstance(meta, dict) else {},
    }
