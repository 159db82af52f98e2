"""Drift counts per hour (``feature_histograms``), kept exact by the batch writer.

The pipeline bins every decided payment's features and score into the champion's reference
bins (``core/drift.py``); the writer counts the rows it actually inserted with
:func:`add_counts`, in the transaction that stores them and their offsets. So the counts of
an hour always equal a count over that hour's stored decisions: a crash before the commit
counts nothing, and a redelivered batch (skipped as already written) is not counted again.
Increments commute, like ``decision_rollup``'s: concurrent consumers never overwrite each
other. See docs/model.md, "Drift".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection

from payscore.core.drift import MAX_BINS, Codes, counts_of
from payscore.store.schema import feature_histograms
from payscore.store.statements import increment_upsert

BIN_COLUMNS = tuple(f"bin_{i:02d}" for i in range(MAX_BINS))


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def increments(
    codes: Codes, rows: Sequence[Mapping[str, Any]], picked: np.ndarray
) -> list[dict[str, Any]]:
    """Upsert rows for the decision ``rows[i]`` of each ``i`` in ``picked``: one per hour of
    their ``scored_at`` and series, sorted (every writer locks in the same order)."""
    if not len(picked):
        return []
    stamps = [rows[i]["scored_at"] for i in picked]
    distinct = set(stamps)  # a consumer's batch shares one scored_at: one hour, one pass
    if len(distinct) == 1:
        groups = [(_hour(stamps[0]), picked)]
    else:
        hours = np.array([_hour(t) for t in stamps], dtype=object)
        groups = [(h, picked[hours == h]) for h in sorted(set(hours))]
    out = []
    for hour, chosen in groups:
        counts = counts_of(codes.codes[chosen]).tolist()
        for name, row in sorted(zip(codes.names, counts, strict=True)):
            out.append(
                {
                    "model_version": codes.model_version,
                    "hour": hour,
                    "feature": name,
                    **dict(zip(BIN_COLUMNS, row, strict=True)),
                }
            )
    return out


def add_counts(
    conn: Connection,
    codes: Codes | None,
    decisions: Sequence[Mapping[str, Any]],
    inserted: Sequence[Mapping[str, Any]],
) -> int:
    """Count the ``inserted`` decision rows (objects of ``decisions``, whose rows ``codes``
    follows) into ``feature_histograms`` inside the caller's transaction; rows touched."""
    if codes is None or not inserted or len(codes.codes) != len(decisions):
        return 0
    if len(inserted) == len(decisions):
        picked = np.arange(len(decisions))
    else:  # some rows were already written (a redelivery) or lost a race: count the others
        position = {id(r): i for i, r in enumerate(decisions)}
        picked = np.fromiter((position[id(r)] for r in inserted), dtype=np.intp)
    values = increments(codes, decisions, picked)
    if values:
        conn.execute(_upsert(conn.dialect.name), values)
    return len(values)


def _upsert(dialect: str) -> Any:
    """INSERT of new (model, hour, series) rows that adds to existing ones."""
    return increment_upsert(
        dialect, feature_histograms, ("model_version", "hour", "feature"), BIN_COLUMNS
    )
