"""The drift section's SQL: the model in service with its metadata, and its hourly drift
counts over a range. SQLAlchemy Core, bound parameters; a range reads one row per hour and
series (about 30 a hour), never the decisions themselves."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, inspect, select

from payscore.dashboard.figures import TimeRange
from payscore.store.drift import BIN_COLUMNS
from payscore.store.schema import feature_histograms, model_versions, models

_fh, _mv, _m = feature_histograms.c, model_versions.c, models.c


def model_in_service(conn: Connection) -> tuple[str, dict[str, Any] | None] | None:
    """(version, metadata) of the registry's champion, else of the model the consumer last
    recorded; metadata None when no consumer has recorded that version yet."""
    version = conn.execute(
        select(_m.version).where(_m.status == "champion").order_by(_m.status_at.desc()).limit(1)
    ).scalar()
    if version is None:
        version = conn.execute(
            select(_mv.version).order_by(_mv.activated_at.desc()).limit(1)
        ).scalar()
    if version is None:
        return None
    raw = conn.execute(select(_mv.metadata_json).where(_mv.version == version)).scalar()
    if raw is None:
        return str(version), None
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = {}
    return str(version), meta if isinstance(meta, dict) else {}


def has_histograms(conn: Connection) -> bool:
    return bool(inspect(conn).has_table(feature_histograms.name))


def hours(tr: TimeRange) -> TimeRange:
    """The whole hours a range touches: counts are kept per hour of decision time."""
    start = None if tr.start is None else tr.start.replace(minute=0, second=0, microsecond=0)
    return TimeRange(start, tr.end)


def histograms(conn: Connection, version: str, tr: TimeRange) -> dict[str, list[int]]:
    """Series name -> counts per bin of ``version``'s decisions in the range's hours."""
    query = (
        select(_fh.feature, *(func.sum(_fh[c]).label(c) for c in BIN_COLUMNS))
        .where(_fh.model_version == version, *hours(tr).clauses(_fh.hour))
        .group_by(_fh.feature)
    )
    return {r.feature: [int(r._mapping[c] or 0) for c in BIN_COLUMNS] for r in conn.execute(query)}


def hour_span(conn: Connection, version: str, tr: TimeRange) -> tuple[datetime, datetime] | None:
    """The first and last hour of the range with counts for ``version``."""
    query = select(func.min(_fh.hour), func.max(_fh.hour)).where(
        _fh.model_version == version, *hours(tr).clauses(_fh.hour)
    )
    first, last = conn.execute(query).one()
    return None if first is None else (first, last)
