"""Writing an analyst's review verdict into fraud_labels, where the pipeline reads labels from."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from payscore.errors import InputError, PayscoreError
from payscore.store.engine import database_error
from payscore.store.schema import fraud_labels, scored_transactions

log = logging.getLogger(__name__)

ANALYST_SOURCE = "analyst"
MAX_NAME_CHARS = 64
MAX_NOTE_CHARS = 2_000


class LabelWriteError(PayscoreError):
    """The database refused the label (read-only user, read-only file, server down)."""


def record_analyst_label(
    engine: Engine,
    transaction_id: str,
    is_fraud: bool,
    analyst: str,
    note: str | None = None,
    now: datetime | None = None,
) -> datetime:
    """Store one analyst label (who and when); returns its known_at (naive UTC).

    A transaction keeps its first label: a second verdict on the same payment is refused rather
    than silently overwriting a chargeback or a colleague's decision.
    """
    analyst = analyst.strip()
    if not analyst:
        raise InputError("enter the analyst name before labelling")
    if len(analyst) > MAX_NAME_CHARS or not analyst.isprintable():
        raise InputError(f"the analyst name must be at most {MAX_NAME_CHARS} printable characters")
    if note is not None:
        note = note.strip()[:MAX_NOTE_CHARS] or None
    known_at = now or datetime.now(timezone.utc).replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                select(scored_transactions.c.id).where(
                    scored_transactions.c.transaction_id == transaction_id
                )
            ).first()
            if exists is None:
                raise InputError(f"no decision for transaction {transaction_id!r}")
            conn.execute(
                insert(fraud_labels).values(
                    transaction_id=transaction_id,
                    is_fraud=bool(is_fraud),
                    known_at=known_at,
                    source=ANALYST_SOURCE,
                    labelled_by=analyst,
                    note=note,
                )
            )
    except IntegrityError as e:
        raise InputError(f"transaction {transaction_id!r} already has a label") from e
    # No URL in these: they are shown on the dashboard, which renders markdown.
    except (OperationalError, ProgrammingError) as e:
        raise LabelWriteError(
            f"cannot store the label: {database_error(e)} (the dashboard's database user "
            "needs INSERT on fraud_labels, and the database must be writable)"
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
