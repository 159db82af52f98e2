"""Stored payments for the what-if replay, as ``Payment`` values in the rebuild's order.

The same rows and order as the consumer's state rebuild (``store/state.py``: event time, then
insertion order), with the fields list and currency rules read (currency, country, ...), which
the rebuild's column-wise history does not carry.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from payscore.core.schema import Payment
from payscore.store.engine import database_error
from payscore.store.schema import scored_transactions

MAX_PAYMENTS = 5_000_000  # a what-if holds them in memory
_FETCH_ROWS = 20_000


def load_payments(db: Engine, since: datetime) -> list[Payment]:
    """Stored payments with event time >= ``since`` (naive UTC), oldest first."""
    c = scored_transactions.c
    query = (
        select(
            c.transaction_id,
            c.customer_id,
            c.terminal_id,
            c.amount,
            c.currency,
            c.event_time,
            c.channel,
            c.merchant_category,
            c.country,
        )
        .where(c.event_time >= since)
        .order_by(c.event_time, c.id)
        .limit(MAX_PAYMENTS)
    )
    out = []
    try:
        with db.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=_FETCH_ROWS).execute(query)
            for tx, cust, term, amount, currency, at, channel, mcc, country in rows:
                out.append(
                    Payment.model_construct(  # stored rows were validated on their way in
                        transaction_id=tx,
                        customer_id=cust,
                        terminal_id=term,
                        amount=amount,
                        currency=currency,
                        event_time=at.replace(tzinfo=timezone.utc),
                        channel=channel,
                        merchant_category=mcc,
                        country=country,
                    )
                )
    except SQLAlchemyError as e:
        raise database_error(e, db.url) from e
    return out
