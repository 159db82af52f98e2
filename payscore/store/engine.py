"""Creating engines late, with driver-specific care, and turning driver errors into ours."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from payscore.config import Settings
from payscore.errors import ConfigError


def make_engine(settings: Settings, read_only: bool = False) -> Engine:
    """An engine for the configured database. Nothing connects until first use."""
    url = make_url(settings.sqlalchemy_url())
    backend = url.get_backend_name()
    if backend in {"mysql", "mariadb"} and url.drivername in {"mysql", "mariadb"}:
        url = url.set(drivername="mysql+mysqldb")
    if backend == "sqlite":
        database = url.database or ""
        if read_only and database and database != ":memory:":
            url = url.set(database=f"file:{database}?mode=ro", query={"uri": "true"})
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        __import__("MySQLdb")
    except ImportError as e:
        raise ConfigError(
            "database_url",
            "config",
            'MySQL support is not installed; run: pip install "payscore[mysql]"',
        ) from e
    connect_args = {"charset": "utf8mb4", "connect_timeout": 10}
    engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800, connect_args=connect_args)
    if read_only:
        event.listen(engine, "connect", _mysql_read_only)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _mysql_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()
