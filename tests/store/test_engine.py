"""The consumer's MySQL engines: values round-trip exactly, lookups hold no transaction."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from payscore.config import Settings
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import fraud_labels, scored_transactions
from payscore.store.writer import DecisionWriter
from tests.store.rows import row

pytestmark = pytest.mark.integration


def decision(tx: str, when: datetime) -> dict[str, object]:
    return row(tx, None, topic=None, when=when)


def test_datetimes_round_trip_through_the_fast_literal(db_url: str) -> None:
    """Naive datetimes with and without microseconds, and an aware one (mysqlclient's path)."""
    engine = make_engine(Settings(database_url=db_url), pre_ping=False)
    whens = [
        datetime(2030, 1, 2, 3, 4, 5),
        datetime(2030, 1, 2, 3, 4, 5, 6),
        datetime(1999, 12, 31, 23, 59, 59, 999999),
    ]
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(scored_transactions),
                [decision(f"tx{i}", w) for i, w in enumerate(whens)],
            )
            aware = datetime(2030, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=2)))
            echoed = conn.execute(select(text(":w")), {"w": aware}).scalar_one()
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    select(scored_transactions.c.event_time).order_by(scored_transactions.c.id)
                )
                .scalars()
                .all()
            )
        assert rows == whens
        assert str(echoed).startswith("2030-01-02 03:04:05.000600")
    finally:
        engine.dispose()


def test_autocommit_lookup_sees_rows_committed_after_its_first_read(db_url: str) -> None:
    """A pooled lookup connection must not keep a snapshot between batches."""
    settings = Settings(database_url=db_url)
    engine = make_engine(settings, pre_ping=False)
    lookup = make_engine(settings, pre_ping=False, autocommit=True)
    writer = DecisionWriter(engine, lookup)
    try:
        assert writer.existing_ids(["a", "b"]) == set()
        writer.write_batch([decision("a", datetime(2030, 1, 1))])
        assert writer.existing_ids(["a", "b"]) == {"a"}
        writer.write_batch([decision("b", datetime(2030, 1, 1))])
        assert writer.existing_ids(["a", "b"]) == {"a", "b"}
    finally:
        lookup.dispose()
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_a_later_label_for_the_same_payment_replaces_the_first(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'labels.db'}"
        engine = make_engine(Settings(database_url=url))
        create_schema(engine)
    else:
        engine = make_engine(Settings(database_url=request.getfixturevalue("db_url")))
    writer = DecisionWriter(engine)
    first, later = datetime(2030, 1, 1), datetime(2030, 1, 9)
    try:
        for fraud, known in ((True, first), (False, later)):
            label = {"transaction_id": "tx1", "is_fraud": fraud, "known_at": known}
            writer.write_batch([], labels=[{**label, "source": "stream"}])
        with engine.connect() as conn:
            stored = conn.execute(select(fraud_labels.c.is_fraud, fraud_labels.c.known_at)).all()
        assert [tuple(r) for r in stored] == [(False, later)]
    finally:
        engine.dispose()
