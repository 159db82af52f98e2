"""Label events are kept; the counting label follows the rule (an analyst's verdict wins)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, select

from payscore.config import Settings
from payscore.errors import InputError
from payscore.store import state
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.labels import analyst_labelled, record_analyst_label
from payscore.store.schema import fraud_labels, label_events, scored_transactions
from payscore.store.writer import DecisionWriter
from tests.store.rows import row

CHARGEBACK = datetime(2030, 1, 9)
VERDICT = datetime(2030, 1, 2)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database with the schema and two decided payments, tx1 and tx2."""
    if request.param == "sqlite":
        engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 'labels.db'}"))
        create_schema(engine)
    else:
        engine = make_engine(Settings(database_url=request.getfixturevalue("db_url")))
    with engine.begin() as conn:
        conn.execute(insert(scored_transactions), [row("tx1", 1), row("tx2", 2)])
    yield engine
    engine.dispose()


def stream(tx: str, fraud: bool, offset: int, known: datetime = CHARGEBACK) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "is_fraud": fraud,
        "known_at": known,
        "kafka_topic": "labels",
        "kafka_partition": 0,
        "kafka_offset": offset,
    }


def counting(engine: Engine) -> list[tuple[Any, ...]]:
    c = fraud_labels.c
    query = select(c.transaction_id, c.is_fraud, c.source, c.labelled_by).order_by(c.transaction_id)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def events(engine: Engine) -> list[tuple[Any, ...]]:
    c = label_events.c
    query = select(c.transaction_id, c.is_fraud, c.source, c.labelled_by).order_by(c.id)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_a_stream_label_does_not_erase_an_analysts_verdict(db: Engine) -> None:
    record_analyst_label(db, "tx1", False, "erin", "known customer", now=VERDICT)
    DecisionWriter(db).write_batch([], labels=[stream("tx1", True, 7)])
    assert counting(db) == [("tx1", False, "analyst", "erin")]
    assert events(db) == [("tx1", False, "analyst", "erin"), ("tx1", True, "stream", None)]
    # The consumer's state rebuild reads the same rule.
    assert [(lb.transaction_id, lb.is_fraud) for lb in state.load_labels(db)] == [("tx1", False)]


def test_an_analysts_verdict_replaces_a_stream_label(db: Engine) -> None:
    DecisionWriter(db).write_batch([], labels=[stream("tx1", True, 7)])
    record_analyst_label(db, "tx1", False, "erin", now=VERDICT)
    assert counting(db) == [("tx1", False, "analyst", "erin")]
    assert events(db) == [("tx1", True, "stream", None), ("tx1", False, "analyst", "erin")]
    labels = state.load_labels(db)
    assert [(lb.is_fraud, lb.known_at) for lb in labels] == [
        (False, VERDICT.replace(tzinfo=timezone.utc))
    ]


def test_between_stream_labels_the_latest_counts(db: Engine) -> None:
    writer = DecisionWriter(db)
    writer.write_batch([], labels=[stream("tx2", True, 1)])
    writer.write_batch([], labels=[stream("tx2", False, 2)])
    assert counting(db) == [("tx2", False, "stream", None)]
    assert [e[1] for e in events(db)] == [True, False]


def test_a_replayed_labels_message_is_one_event(db: Engine) -> None:
    writer = DecisionWriter(db)
    for _ in range(2):
        writer.write_batch([], labels=[stream("tx2", True, 5)])
    assert events(db) == [("tx2", True, "stream", None)]


def test_a_second_analyst_verdict_is_refused(db: Engine) -> None:
    record_analyst_label(db, "tx1", True, "erin")
    with pytest.raises(InputError, match="already has a verdict by erin"):
        record_analyst_label(db, "tx1", False, "frank")
    assert counting(db) == [("tx1", True, "analyst", "erin")]
    assert len(events(db)) == 1
    assert analyst_labelled(db, ["tx1", "tx2", "nope"]) == {"tx1"}


def test_initdb_carries_existing_labels_over_once(db: Engine) -> None:
    """A database from before label_events: its labels become the first events."""
    with db.begin() as conn:
        label_events.drop(conn)
        conn.execute(
            insert(fraud_labels),
            [
                {
                    "transaction_id": "tx1",
                    "is_fraud": True,
                    "known_at": CHARGEBACK,
                    "source": "stream",
                    "labelled_by": None,
                    "note": None,
                },
                {
                    "transaction_id": "tx2",
                    "is_fraud": False,
                    "known_at": VERDICT,
                    "source": "analyst",
                    "labelled_by": "erin",
                    "note": "ok",
                },
            ],
        )
    report = create_schema(db)
    assert "label_events" in report.created and report.labels_carried == 2
    assert events(db) == [("tx1", True, "stream", None), ("tx2", False, "analyst", "erin")]
    again = create_schema(db)
    assert again.labels_carried == 0 and not again.created
    assert len(events(db)) == 2
    with db.connect() as conn:
        names = {ix["name"] for ix in inspect(conn).get_indexes("label_events")}
    assert {"ix_label_events_tx", "ux_label_events_source"} <= names


@pytest.mark.integration
def test_a_select_only_user_reads_labels_and_cannot_write_one(
    db_url: str, _db_admin_engine: Any
) -> None:
    """The dashboard's read-only views need SELECT only; a label then fails with the grants
    it needs, instead of a trace."""
    import re
    import secrets
    import uuid

    from sqlalchemy import text
    from sqlalchemy.engine import URL, make_url

    from payscore.dashboard import lookups
    from payscore.store.labels import LabelWriteError

    admin = make_engine(Settings(database_url=db_url))
    with admin.begin() as conn:
        conn.execute(insert(scored_transactions), [row("tx1", 1), row("tx2", 2)])
    record_analyst_label(admin, "tx1", True, "erin")
    admin.dispose()
    url = make_url(db_url)
    user, password = f"ro_{uuid.uuid4().hex[:12]}", secrets.token_hex(16)
    assert re.fullmatch(r"ro_[0-9a-f]{12}", user) and url.database  # our own names in DDL
    with _db_admin_engine.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": password})
        conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'%'"))
    reader_url = URL.create(
        url.drivername, user, None, url.host, url.port, url.database
    ).render_as_string(hide_password=False)
    settings = Settings(database_url=reader_url, database_password=password)
    reader = make_engine(settings, read_only=True)
    writer = make_engine(settings)
    try:
        with reader.connect() as conn:
            history = lookups.label_history(conn, "tx1")
            assert list(history["labelled_by"]) == ["erin"]
            assert lookups.counting_label(conn, "tx1")["source"] == "analyst"  # type: ignore[index]
        with pytest.raises(LabelWriteError, match="needs INSERT on label_events"):
            record_analyst_label(writer, "tx2", False, "frank")
    finally:
        reader.dispose()
        writer.dispose()
        with _db_admin_engine.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))


def test_a_verdict_whose_event_fails_leaves_no_label(db: Engine) -> None:
    """The verdict and its audit event are one transaction, on SQLite as on MariaDB."""
    from sqlalchemy import text

    from payscore.store.labels import LabelWriteError

    trigger = "payscore_test_refuse_events"
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON label_events "
                    "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON label_events FOR EACH ROW "
                    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'"
                )
            )
    try:
        with pytest.raises((LabelWriteError, InputError)):
            record_analyst_label(db, "tx1", True, "ana", now=VERDICT)
        assert counting(db) == []
        assert events(db) == []
    finally:
        with db.begin() as conn:
            conn.execute(text(f"DROP TRIGGER {trigger}"))
