"""Scratch databases and topics for ``payscore bench``, and the database ceiling.

Everything the benchmark writes goes to a database and topics made for the run
(``payscore_bench_<id>`` on MySQL, temp files on SQLite) and removed afterwards. The ceiling is
plain batched INSERTs of the very rows the consumer would store, one commit per batch.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import insert, text
from sqlalchemy.exc import SQLAlchemyError

from payscore.config import Settings
from payscore.core.decision import APPROVED, Decision
from payscore.core.schema import Payment
from payscore.errors import ServiceUnavailable
from payscore.pipeline import RawMessage, decision_row
from payscore.store.engine import database_error, database_url, make_engine
from payscore.store.initdb import create_schema
from payscore.store.schema import scored_transactions
from payscore.stream.kafka import make_admin

log = logging.getLogger(__name__)


@contextlib.contextmanager
def scratch_database(settings: Settings, label: str) -> Iterator[Settings]:
    """Settings pointing at a new, schema-initialised database, dropped on exit.

    The scratch settings hold the password in ``database_password`` (a secret, masked in
    every rendering), never in ``database_url``, wherever the user's settings had it.
    """
    url = database_url(settings)
    if url.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="payscore-bench-") as tmp:
            path = Path(tmp) / f"{label}.db"
            scratch = settings.model_copy(update={"database_url": f"sqlite:///{path}"})
            _init(scratch)
            yield scratch
        return
    name = f"payscore_bench_{uuid.uuid4().hex[:12]}_{label}"
    if not re.fullmatch(r"payscore_bench_[0-9a-f]{12}_[a-z]{1,8}", name):
        raise ValueError("bad scratch database label")  # the name goes into DDL
    server = make_engine(settings)
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except SQLAlchemyError as e:
        server.dispose()
        raise ServiceUnavailable(
            f"cannot create scratch database {name}: {database_error(e, server.url)}"
        ) from e
    scratch = scratch_settings(settings, name)
    try:
        _init(scratch)
        yield scratch
    finally:
        try:
            with server.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        except SQLAlchemyError as e:
            log.warning(
                "could not drop scratch database %s: %s", name, database_error(e, server.url)
            )
        server.dispose()


def scratch_settings(settings: Settings, database: str) -> Settings:
    """``settings`` for another database on the same server, the password kept a secret."""
    url = database_url(settings)
    password = url.password
    # ``URL.set`` ignores None; the named tuple's own ``_replace`` removes the password.
    bare = url._replace(database=database, password=None).render_as_string(hide_password=False)
    return settings.model_copy(
        update={
            "database_url": bare,
            "database_password": None if password is None else SecretStr(str(password)),
        }
    )


def _init(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        create_schema(engine)
    finally:
        engine.dispose()


# -- the four measurements --------------------------------------------------------------


def ceiling_rows(payments: Sequence[Payment], now: datetime) -> list[dict[str, Any]]:
    """The very rows the consumer would store, built by the pipeline's own row function."""
    rows = []
    for i, p in enumerate(payments):
        decision = Decision(p.transaction_id, 0.01, APPROVED, (), "bench")
        message = RawMessage("bench", i % 6, i, None, None)
        rows.append(decision_row(p, decision, message, now, now))
    return rows


def measure_db_ceiling(settings: Settings, payments: Sequence[Payment], batch_size: int) -> float:
    """Rows/s of batched multi-row INSERTs with a commit per batch, into a scratch database."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = ceiling_rows(payments, now)
    with scratch_database(settings, "ceiling") as scratch:
        engine = make_engine(scratch)
        try:
            started = time.perf_counter()
            for lo in range(0, len(rows), batch_size):
                with engine.begin() as conn:
                    conn.execute(insert(scored_transactions), rows[lo : lo + batch_size])
            elapsed = time.perf_counter() - started
        except SQLAlchemyError as e:
            raise database_error(e, engine.url) from e
        finally:
            engine.dispose()
    return len(rows) / elapsed if elapsed > 0 else 0.0


def build_consumer(settings: Settings, max_messages: int, idle_exit_s: float) -> Any:
    """The same objects ``payscore consume`` builds (``build_consumer_app``)."""
    from payscore.stream.consumer import build_consumer_app

    app = build_consumer_app(settings, max_messages=max_messages, idle_exit_s=idle_exit_s)
    return app.consumer, app.pipeline, app


def bench_settings(settings: Settings, scratch: Settings, topic: str, group: str) -> Settings:
    return scratch.model_copy(
        update={
            "input_topic": topic,
            "dlq_topic": f"{topic}.dlq",
            "decisions_topic": f"{topic}.decisions",
            "consumer_group": group,
            "labels_topic": "",
        }
    )


def delete_topics(settings: Settings, topics: list[str]) -> None:
    try:
        admin = make_admin(settings)
        try:
            existing = set(admin.list_topics())
            doomed = [t for t in topics if t in existing]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()
    except Exception as e:  # a leftover scratch topic is untidy, not a failure
        log.warning("could not delete benchmark topics %s: %s", topics, e)
