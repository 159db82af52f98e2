"""Fraud labels: every event kept in ``label_events``, the one that counts in ``fraud_labels``.

The rule (docs/security.md, "Who can change decisions"): an analyst's verdict wins over labels
from the labels topic, whatever their order; a payment takes one analyst verdict (a second is
refused, so two analysts on the same payment cannot silently overwrite each other); among
labels-topic messages the latest recorded wins. ``fraud_labels`` holds the result of that rule,
updated in the same transaction as the event, and is what features, the review queue and the
fraud rate read. Every writer of ``fraud_labels`` then calls :func:`recount`, which keeps the
rollup's fraud counts (``decision_rollup.frauds``, store/rollup.py) exact in that transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    exists,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from payscore.errors import InputError, PayscoreError
from payscore.store.engine import begin_write, database_error
from payscore.store.rollup import add_frauds
from payscore.store.schema import fraud_labels, label_events, scored_transactions
from payscore.store.statements import insert_ignore

log = logging.getLogger(__name__)

ANALYST_SOURCE = "analyst"
STREAM_SOURCE = "stream"
MAX_NAME_CHARS = 64
MAX_NOTE_CHARS = 2_000
_IN_CHUNK = 500  # ids per IN (...) list
_fl = fraud_labels.c
_ev = label_events.c
_st = scored_transactions.c


class LabelWriteError(PayscoreError):
    """The database refused the label (read-only user, read-only file, server down)."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# -- labels-topic messages (the consumer's writer) -----------------------------------------


@functools.cache
def _stream_upsert(dialect: str) -> Any:
    """The counting label from a labels-topic message; never over an analyst's verdict."""
    if dialect == "sqlite":
        stmt = sqlite_dialect.insert(fraud_labels)
        return stmt.on_conflict_do_update(
            index_elements=["transaction_id"],
            set_={"is_fraud": stmt.excluded.is_fraud, "known_at": stmt.excluded.known_at},
            where=_fl.source != ANALYST_SOURCE,
        )
    mstmt = mysql_dialect.insert(fraud_labels)
    # Inline, not a parameter: mysqlclient's executemany rewrites the VALUES part into one
    # multi-row insert and cannot place parameters that follow it.
    analyst = _fl.source == literal_column("'analyst'")
    assert ANALYST_SOURCE == "analyst"  # noqa: S101 - the constant written inline above
    return mstmt.on_duplicate_key_update(
        is_fraud=case((analyst, _fl.is_fraud), else_=mstmt.inserted.is_fraud),
        known_at=case((analyst, _fl.known_at), else_=mstmt.inserted.known_at),
    )


def record_stream_labels(conn: Connection, dialect: str, rows: Sequence[dict[str, Any]]) -> None:
    """Store labels-topic labels inside the caller's transaction.

    ``rows`` have ``transaction_id``, ``is_fraud``, ``known_at`` (naive UTC) and, from the
    consumer, ``kafka_topic``/``kafka_partition``/``kafka_offset``. Each becomes an event; the
    counting label follows it unless the payment has an analyst's verdict.
    """
    if not rows:
        return
    now = _now()
    events = [
        {
            "transaction_id": r["transaction_id"],
            "is_fraud": bool(r["is_fraud"]),
            "source": STREAM_SOURCE,
            "labelled_by": None,
            "note": None,
            "known_at": r["known_at"],
            "recorded_at": now,
            "kafka_topic": r.get("kafka_topic"),
            "kafka_partition": r.get("kafka_partition"),
            "kafka_offset": r.get("kafka_offset"),
        }
        for r in rows
    ]
    # A labels-topic message already stored (same coordinates) is skipped.
    conn.execute(insert_ignore(dialect, label_events), events)
    counting = [
        {
            "transaction_id": r["transaction_id"],
            "is_fraud": bool(r["is_fraud"]),
            "known_at": r["known_at"],
            "source": STREAM_SOURCE,
            "counted": False,  # a new row only: ``recount`` below counts it
        }
        for r in rows
    ]
    conn.execute(_stream_upsert(dialect), counting)
    recount(conn, [r["transaction_id"] for r in rows])


# -- the rollup's fraud counts ---------------------------------------------------------------

_SET_COUNTED = (
    update(fraud_labels)
    .where(_fl.transaction_id == bindparam("tx"))
    .values(counted=bindparam("counted"))
)


def recount(conn: Connection, transaction_ids: Sequence[str]) -> int:
    """Bring ``decision_rollup.frauds`` up to date with these payments' counting labels, just
    written in the caller's transaction; returns by how much it moved (+/-).

    A label counts when it says fraud and its decision is stored; ``fraud_labels.counted``
    says whether it is counted, so a label repeated, turned to legitimate or stored before its
    decision moves the count once or not at all. Both reads lock: the labels were just written
    (their rows are ours already), and a decision being inserted by another transaction is
    waited for, not missed (store/rollup.py's module doc says why this is exact).
    """
    ids = sorted(set(transaction_ids))
    state: dict[str, tuple[bool, bool | None]] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        labels = conn.execute(
            select(_fl.transaction_id, _fl.is_fraud, _fl.counted)
            .where(_fl.transaction_id.in_(ids[i : i + _IN_CHUNK]))
            .with_for_update()
        )
        state.update(
            (tx, (bool(fraud), None if counted is None else bool(counted)))
            for tx, fraud, counted in labels
        )
    # Only a label whose verdict differs from what is counted needs its decision.
    moving = sorted(tx for tx, (fraud, counted) in state.items() if fraud != bool(counted))
    decided: dict[str, datetime] = {}
    for i in range(0, len(moving), _IN_CHUNK):
        found = conn.execute(
            select(_st.transaction_id, _st.scored_at)
            .where(_st.transaction_id.in_(moving[i : i + _IN_CHUNK]))
            .with_for_update(read=True)
        )
        decided.update((tx, scored_at) for tx, scored_at in found)
    changes: list[tuple[datetime, int]] = []
    marks: list[dict[str, Any]] = []
    for tx, (fraud, counted) in sorted(state.items()):
        was = bool(counted)
        # A fraud label before its decision stays uncounted: the decision's writer claims it.
        now = was if fraud == was else fraud and tx in decided
        if now != was and tx in decided:
            changes.append((decided[tx], 1 if now else -1))
        if counted is None or now != was:  # a new label's NULL is set whatever the verdict
            marks.append({"tx": tx, "counted": now})
    if marks:
        conn.execute(_SET_COUNTED, marks)
    add_frauds(conn, changes)
    return sum(delta for _, delta in changes)


def analyst_labelled(engine: Engine, transaction_ids: Iterable[str]) -> set[str]:
    """Which of these payments have an analyst's verdict (a labels-topic label cannot
    change their counting label, so the consumer must not feed it to its features)."""
    ids = sorted(set(transaction_ids))
    if not ids:
        return set()
    query = select(_fl.transaction_id).where(
        _fl.transaction_id.in_(ids), _fl.source == ANALYST_SOURCE
    )
    try:
        with engine.connect() as conn:
            return set(conn.execute(query).scalars())
    except SQLAlchemyError as e:
        raise database_error(e, engine.url) from e


# -- analysts (the dashboard) ----------------------------------------------------------------


def record_analyst_label(
    engine: Engine,
    transaction_id: str,
    is_fraud: bool,
    analyst: str,
    note: str | None = None,
    now: datetime | None = None,
) -> datetime:
    """Store one analyst's verdict; returns its known_at (naive UTC).

    ``analyst`` is the signed-in user name, never typed in. The verdict replaces a labels-topic
    label as the counting one; a payment that already has an analyst's verdict refuses another.
    """
    analyst = analyst.strip()
    if not analyst:
        raise InputError("sign in before labelling")
    if len(analyst) > MAX_NAME_CHARS or not analyst.isprintable():
        raise InputError(f"the analyst name must be at most {MAX_NAME_CHARS} printable characters")
    if note is not None:
        note = note.strip()[:MAX_NOTE_CHARS] or None
    known_at = now or _now()
    counting = {
        "is_fraud": bool(is_fraud),
        "known_at": known_at,
        "source": ANALYST_SOURCE,
        "labelled_by": analyst,
        "note": note,
    }
    try:
        with engine.begin() as conn:
            begin_write(conn)  # the label and its event, together or not at all
            decided = conn.execute(
                select(scored_transactions.c.id).where(
                    scored_transactions.c.transaction_id == transaction_id
                )
            ).first()
            if decided is None:
                raise InputError(f"no decision for transaction {transaction_id!r}")
            current = conn.execute(
                select(_fl.source, _fl.labelled_by).where(_fl.transaction_id == transaction_id)
            ).first()
            if current is None:
                conn.execute(
                    insert(fraud_labels).values(
                        transaction_id=transaction_id, counted=False, **counting
                    )
                )
            elif current.source == ANALYST_SOURCE:
                raise InputError(
                    f"transaction {transaction_id!r} already has a verdict by {current.labelled_by}"
                )
            else:
                # Conditional, so an analyst's verdict stored meanwhile is never overwritten.
                changed = conn.execute(
                    update(fraud_labels)
                    .where(_fl.transaction_id == transaction_id, _fl.source != ANALYST_SOURCE)
                    .values(**counting)
                ).rowcount
                if changed != 1:
                    raise InputError(f"transaction {transaction_id!r} was labelled meanwhile")
            conn.execute(
                insert(label_events).values(
                    transaction_id=transaction_id, recorded_at=known_at, **counting
                )
            )
            recount(conn, [transaction_id])
    except IntegrityError as e:
        raise InputError(f"transaction {transaction_id!r} was labelled meanwhile") from e
    # No URL in these: they are shown on the dashboard, which renders markdown.
    except (OperationalError, ProgrammingError) as e:
        raise LabelWriteError(
            f"cannot store the label: {database_error(e)} (the dashboard's database user "
            "needs INSERT on label_events and INSERT, UPDATE on fraud_labels and "
            "decision_rollup, and the database must be writable)"
        ) from e
    except SQLAlchemyError as e:
        raise LabelWriteError(f"cannot store the label: {database_error(e)}") from e
    log.info(
        "analyst %s labelled %s as %s",
        analyst,
        transaction_id,
        "fraud" if is_fraud else "legitimate",
    )
    return known_at


# -- upgrade ---------------------------------------------------------------------------------


def carry_over(conn: Connection) -> int:
    """Copy counting labels that have no event (a database from before label_events) into
    label_events, one event each; returns how many. Harmless to run again."""
    has_event = exists().where(_ev.transaction_id == _fl.transaction_id)
    missing = select(
        _fl.transaction_id,
        _fl.is_fraud,
        _fl.source,
        _fl.labelled_by,
        _fl.note,
        _fl.known_at,
        literal(_now(), label_events.c.recorded_at.type).label("recorded_at"),
    ).where(~has_event)
    copy = insert(label_events).from_select(list(missing.selected_columns.keys()), missing)
    return int(conn.execute(copy).rowcount or 0)
