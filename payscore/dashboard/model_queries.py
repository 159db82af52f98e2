"""The Model tab's SQL: the registry, and the champion's and challenger's scores on the
decisions of a range with their labels. SQLAlchemy Core, bound parameters, bounded results.

A payment counts as labelled when its label has arrived (``fraud_labels``), or, without one,
once the label delay has passed since it (counted genuine, as ``train --from-db`` does: the
labels topic carries chargebacks, not confirmations). "Passed" is measured on the stream's own
clock, the latest stored event time, so replayed 2018 traffic judges the same way as live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, case, func, select

from payscore.dashboard.figures import TimeRange
from payscore.store.schema import fraud_labels, models, scored_transactions

RECENT_MODELS = 10  # candidates and retired models listed besides the two in service
MAX_SCORED = 200_000  # newest decisions of the range compared (the page says when capped)
_m, st, fl = models.c, scored_transactions.c, fraud_labels.c


@dataclass(frozen=True)
class RegisteredModel:
    """A registry row as the page shows it."""

    version: str
    status: str
    trained_at: datetime
    trained_by: str
    status_at: datetime
    metrics: dict[str, float]
    thresholds: dict[str, float]
    periods: dict[str, Any]


def _model(row: Any) -> RegisteredModel:
    m = row._mapping

    def parsed(name: str) -> dict[str, Any]:
        try:
            value = json.loads(m[name])
        except (TypeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    return RegisteredModel(
        m["version"],
        m["status"],
        m["trained_at"],
        m["trained_by"],
        m["status_at"],
        parsed("metrics_json"),
        parsed("thresholds_json"),
        parsed("periods_json"),
    )


def in_role(conn: Connection, status: str) -> RegisteredModel | None:
    """The model holding ``status`` (champion or challenger), None if none does."""
    query = select(models).where(_m.status == status).order_by(_m.status_at.desc()).limit(1)
    row = conn.execute(query).first()
    return None if row is None else _model(row)


def recent_models(conn: Connection, limit: int = RECENT_MODELS) -> list[RegisteredModel]:
    """The latest registered models in neither role, newest status change first."""
    query = (
        select(models)
        .where(_m.status.not_in(("champion", "challenger")))
        .order_by(_m.status_at.desc(), _m.version)
        .limit(limit)
    )
    return [_model(r) for r in conn.execute(query)]


def labels_horizon(conn: Connection, delay_days: int) -> datetime | None:
    """Payments before this event time without a label count as genuine (None: no payment)."""
    latest = conn.execute(select(func.max(st.event_time))).scalar()
    return None if latest is None else latest - timedelta(days=delay_days)


def scored(
    conn: Connection,
    tr: TimeRange,
    champion: str,
    challenger: str | None,
    horizon: datetime | None,
    limit: int = MAX_SCORED,
) -> pd.DataFrame:
    """The range's decisions made by ``champion`` (and shadow-scored by ``challenger`` if
    given), newest first, at most ``limit`` + 1 (one more tells the caller it is capped):
    customer, event time, both scores, ``labelled`` and ``is_fraud`` (0 unless a fraud)."""
    where = [*tr.clauses(st.scored_at), st.model_version == champion]
    if challenger is not None:
        where.append(st.challenger_version == challenger)
    known: ColumnElement[bool] = fl.transaction_id.is_not(None)
    if horizon is not None:
        known = known | (st.event_time < horizon)
    query = (
        select(
            st.customer_id,
            st.event_time,
            st.score,
            st.challenger_score,
            case((known, 1), else_=0).label("labelled"),
            case((fl.is_fraud.is_(True), 1), else_=0).label("is_fraud"),
        )
        .select_from(
            scored_transactions.outerjoin(fraud_labels, fl.transaction_id == st.transaction_id)
        )
        .where(*where)
        .order_by(st.scored_at.desc(), st.id.desc())
        .limit(limit + 1)
    )
    frame = pd.DataFrame(conn.execute(query).all(), columns=list(query.selected_columns.keys()))
    frame["event_time"] = pd.to_datetime(frame["event_time"])
    return frame.astype(
        {
            "score": "float64",
            "challenger_score": "float64",
            "labelled": "int64",
            "is_fraud": "int64",
        }
    )
