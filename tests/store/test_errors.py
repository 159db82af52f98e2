"""Every path to the database words a failure the same way: ``database_error``'s one line.

A real unreachable MySQL (port 1 of this machine: refused at once, no service needed) goes
through each module that talks to the database; so do SQLite errors that are refused
statements rather than an unreachable database. The message names the database with its
password masked and gives the driver's text as a detail, never its raw ``(code, text)`` tuple.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from payscore.config import Settings
from payscore.errors import ServiceUnavailable
from payscore.store import state
from payscore.store.engine import database_error, make_engine, shown_url
from payscore.store.initdb import create_schema
from payscore.store.labels import LabelWriteError, record_analyst_label
from payscore.store.process import ProcessWriter, reported
from payscore.store.writer import DecisionWriter
from tests.store.rows import row

DEAD_URL = "mysql://nobody:secret@127.0.0.1:1/none"
#: The one wording, for a server that is not there.
UNREACHABLE = re.compile(
    r"^cannot reach the database at mysql://nobody:\*{8}@127\.0\.0\.1:1/none: "
    r"Can't connect to [^\n]*\(MySQL error 200\d\)$"
)


@pytest.fixture
def dead() -> Iterator[Engine]:
    pytest.importorskip("MySQLdb")
    engine = make_engine(Settings(database_url=DEAD_URL))
    yield engine
    engine.dispose()


def _message(call: Callable[[], Any]) -> str:
    with pytest.raises(ServiceUnavailable) as raised:
        call()
    text = str(raised.value)
    assert "secret" not in text
    assert not re.search(r"\(\d{4}, ", text), text  # no raw (code, text) tuple
    return text


def test_lost_server_reads_as_unreachable_with_the_code_as_detail() -> None:
    lost = OperationalError("SELECT 1", {}, Exception(2013, "Lost connection to server"))
    assert str(database_error(lost, "mysql://u:pw@db/x")) == (
        "cannot reach the database at mysql://u:********@db/x: "
        "Lost connection to server (MySQL error 2013)"
    )


def test_a_refused_statement_is_a_database_error_not_unreachable() -> None:
    duplicate = IntegrityError("INSERT", {}, Exception(1062, "Duplicate entry 'a'"))
    assert str(database_error(duplicate, "mysql://u:pw@db/x")) == (
        "database error at mysql://u:********@db/x: Duplicate entry 'a' (MySQL error 1062)"
    )
    read_only = OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))
    assert str(database_error(read_only)) == "database error: attempt to write a readonly database"
    denied = OperationalError("SELECT", {}, Exception(1045, "Access denied for user 'u'"))
    assert str(database_error(denied)).startswith("cannot reach the database: Access denied")


def test_an_engines_url_reads_as_the_user_wrote_it(dead: Engine, tmp_path: Path) -> None:
    assert dead.url.drivername == "mysql+mysqldb"  # added by make_engine
    assert shown_url(dead.url) == "mysql://nobody:********@127.0.0.1:1/none"
    url = f"sqlite:///{tmp_path / 'pay[1] #2.db'}"
    for read_only in (False, True):
        engine = make_engine(Settings(database_url=url), read_only=read_only)
        assert shown_url(engine.url) == url


def test_initdb(dead: Engine) -> None:
    assert UNREACHABLE.match(_message(lambda: create_schema(dead)))


@pytest.mark.parametrize(
    "call",
    [
        lambda w: w.read_offsets("g", "payments"),
        lambda w: w.existing_ids(["a"]),
        lambda w: w.ping(),
        lambda w: w.write_batch([row("a", 0)]),
        lambda w: w.register_model("v1", datetime(2030, 1, 1), "{}"),
    ],
    ids=["read_offsets", "existing_ids", "ping", "write_batch", "register_model"],
)
def test_writer(dead: Engine, call: Callable[[DecisionWriter], Any]) -> None:
    assert UNREACHABLE.match(_message(lambda: call(DecisionWriter(dead))))


@pytest.mark.parametrize(
    "call",
    [
        lambda db: state.latest_event_time(db, "payments"),
        lambda db: state.load_history(db, "payments", datetime(2030, 1, 1)),
        lambda db: state.load_labels(db),
    ],
    ids=["latest_event_time", "load_history", "load_labels"],
)
def test_state(dead: Engine, call: Callable[[Engine], Any]) -> None:
    assert UNREACHABLE.match(_message(lambda: call(dead)))


def test_labels_keep_their_explanation_around_the_one_wording(dead: Engine) -> None:
    with pytest.raises(LabelWriteError) as raised:
        record_analyst_label(dead, "t1", True, "carol")
    text = str(raised.value)
    assert text.startswith("cannot store the label: cannot reach the database: Can't connect")
    assert re.search(r"\(MySQL error 200\d\) \(the dashboard's database user needs INSERT", text)


def test_scratch_database(dead: Engine) -> None:
    from payscore.bench.scratch import scratch_database

    def create() -> None:
        with scratch_database(Settings(database_url=DEAD_URL), "ceiling"):
            pass

    text = _message(create)
    found = re.fullmatch(r"cannot create scratch database (payscore_bench_\w+): (.*)", text)
    assert found and UNREACHABLE.match(found.group(2)), text


def test_writer_process_reports_in_the_same_words(tmp_path: Path) -> None:
    """The child's failure crosses the pipe as text: it must already be in the one wording."""
    lost = OperationalError("INSERT", {}, Exception(2013, "Lost connection to server"))
    url = "mysql://u:pw@db/x"
    assert str(reported(lost, url)) == str(database_error(lost, url))
    assert reported(ValueError("bug"), None) == "ValueError: bug"

    url = f"sqlite:///{tmp_path / 'no-schema.db'}"  # no tables: the child's write is refused
    settings = Settings(database_url=url)
    engine = make_engine(settings)
    writer = ProcessWriter(settings, engine)
    try:
        text = _message(lambda: writer.write_batch([row("a", 0)]))
    finally:
        writer.close()
        engine.dispose()
    assert text.startswith(f"database error at {url}: no such table: "), text
    assert "sqlite3.OperationalError" not in text
