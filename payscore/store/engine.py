"""Creating engines late, with driver-specific care, and turning driver errors into ours."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from payscore.config import Settings, mask_url
from payscore.errors import ConfigError, MissingExtra, ServiceUnavailable

#: Errors that always mean the database could not be reached or used at all: the connection
#: broke or the pool is empty. An ``OperationalError`` may be that too, or a refused statement
#: (a read-only database, a missing table): ``_unreachable`` tells them apart.
_UNREACHABLE = (InterfaceError, DisconnectionError, PoolTimeout)
#: MySQL server errors that refuse the connection itself (too many connections, access denied
#: for the user or to the database, unknown database, shutting down, host blocked or not
#: allowed); client errors (2000-2999: cannot connect, server gone, lost connection) are too.
_MYSQL_REFUSED = frozenset({1040, 1044, 1045, 1049, 1053, 1129, 1130, 1203})


def make_engine(
    settings: Settings,
    read_only: bool = False,
    *,
    pre_ping: bool = True,
    autocommit: bool = False,
    reset_on_return: bool = True,
) -> Engine:
    """An engine for the configured database. Nothing connects until first use.

    The consumer's hot path turns ``pre_ping`` off (a round trip per checkout; its callers
    retry a dead connection anyway) and reads through an ``autocommit`` engine, whose
    connections need no rollback when they go back to the pool. Its writer, which only ever
    uses ``engine.begin()`` (committed or rolled back on the way out), skips the pool's
    ``reset_on_return`` rollback as well.
    """
    url = database_url(settings)
    backend = url.get_backend_name()
    if backend in {"mysql", "mariadb"} and url.drivername in {"mysql", "mariadb"}:
        url = url.set(drivername="mysql+mysqldb")
    if backend == "sqlite":
        database = url.database or ""
        read_only = read_only and bool(database) and database != ":memory:"
        if read_only:
            # Percent-quote the path so spaces, '#' or '%' in a file name survive the URI form.
            url = url.set(database=f"file:{quote(database)}?mode=ro", query={"uri": "true"})
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_read_pragmas if read_only else _sqlite_pragmas)
        return engine
    try:
        __import__("MySQLdb")
    except ImportError as e:
        # Not a bad setting: the URL is fine, the optional driver is missing.
        raise MissingExtra("MySQL support (the mysqlclient driver)", "mysql") from e
    connect_args = {"charset": "utf8mb4", "connect_timeout": 10, "conv": _mysql_conversions()}
    options: dict[str, Any] = {}
    if autocommit:
        options = {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
    if not reset_on_return:
        options["pool_reset_on_return"] = None
    engine = create_engine(
        url, pool_pre_ping=pre_ping, pool_recycle=1800, connect_args=connect_args, **options
    )
    if read_only:
        event.listen(engine, "connect", _mysql_read_only)
    return engine


def database_url(settings: Settings) -> URL:
    """The configured URL with ``database_password`` set into it; never log the result.

    Built with SQLAlchemy's own URL type, which encodes the password the way it decodes it
    (any character, space and ``+`` included) and keeps an IPv6 host whole. A password needs
    a user to go with it, and is set in one place only: both mistakes are refused.
    """
    try:
        url = make_url(settings.database_url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError("database_url", "settings", f"not a database URL: {e}") from None
    if settings.database_password is None:
        return url
    shown = shown_url(url)
    if not url.username:
        raise ConfigError(
            "database_password",
            "settings",
            f"database_url {shown} names no user for the password; write it as "
            "mysql://USER@host/database",
        )
    if url.password is not None:
        raise ConfigError(
            "database_password",
            "settings",
            f"database_url {shown} carries a password too; keep only database_password",
        )
    return url.set(password=settings.database_password.get_secret_value())


def database_error(error: SQLAlchemyError, url: str | URL | None = None) -> ServiceUnavailable:
    """The one wording of a database failure: what failed, where, then the driver's text.

    Every module that talks to the database words its failures with this, so a log line, a
    CLI error and the dashboard read alike: ``cannot reach the database at <url>: <driver
    text> (MySQL error <code>)``, or ``database error at <url>: ...`` for a refused statement.
    ``url`` (a string or an engine's URL) is shown with its password masked.
    """
    where = f" at {shown_url(url)}" if url else ""
    if _unreachable(error):
        return ServiceUnavailable(f"cannot reach the database{where}: {driver_message(error)}")
    return ServiceUnavailable(f"database error{where}: {driver_message(error)}")


def shown_url(url: str | URL) -> str:
    """A database URL for messages: password masked, and without what ``make_engine`` adds
    (the default MySQL driver, SQLite's read-only URI form), so that it reads as the user
    wrote it. A SQLite path is shown as it is, not percent-encoded."""
    if isinstance(url, URL):
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if url.query.get("uri") == "true" and database.startswith("file:"):
                database = unquote(database.removeprefix("file:").split("?", 1)[0])
            return f"{url.drivername}:///{database}" if database else f"{url.drivername}://"
        if url.drivername in {"mysql+mysqldb", "mariadb+mysqldb"}:
            url = url.set(drivername=url.get_backend_name())
        url = url.render_as_string(hide_password=False)
    return mask_url(url)


def driver_message(error: BaseException) -> str:
    """The driver's own text, first line only, without SQLAlchemy's statement dump.

    mysqlclient's errors are ``(code, text)`` tuples; they read as ``text (MySQL error code)``.
    """
    orig = getattr(error, "orig", None) or error
    code = _mysql_code(error)
    text = f"{orig.args[1]} (MySQL error {code})" if code is not None else str(orig)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _mysql_code(error: BaseException) -> int | None:
    """The code of a mysqlclient ``(code, text)`` error, else None."""
    orig = getattr(error, "orig", None) or error
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return args[0]
    return None


def _unreachable(error: SQLAlchemyError) -> bool:
    """Whether the database could not be reached at all, rather than refused one statement."""
    if isinstance(error, _UNREACHABLE) or getattr(error, "connection_invalidated", False):
        return True
    if not isinstance(error, OperationalError):
        return False
    code = _mysql_code(error)
    if code is not None:
        return 2000 <= code < 3000 or code in _MYSQL_REFUSED
    # SQLite reports every failure as OperationalError; only this one means "not reached".
    return "unable to open database file" in str(error.orig)


def _mysql_conversions() -> dict[Any, Any]:
    """mysqlclient's conversions, with a faster literal for naive datetimes.

    mysqlclient formats parameters client side; its datetime literal (a Python format string
    per value) was the largest single cost of writing a decision row, which has three.
    ``isoformat`` gives the same 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in C, and that text
    has nothing to escape. Aware datetimes keep mysqlclient's own path.
    """
    from MySQLdb.converters import conversions
    from MySQLdb.times import DateTime2literal

    def datetime_literal(value: datetime, mapping: Any) -> str | bytes:
        if value.tzinfo is not None:
            return DateTime2literal(value, mapping)
        return "'" + value.isoformat(" ") + "'"

    return {**conversions, datetime: datetime_literal}


def begin_write(conn: Connection) -> None:
    """Make ``conn``'s ``engine.begin()`` block all or nothing on SQLite, one writer at a time.

    The SQLite connections here run pysqlite in autocommit mode (``isolation_level=None``), so
    ``engine.begin()`` alone emits no BEGIN and every statement would commit on its own. Call
    this first in any block that writes more than one statement. BEGIN IMMEDIATE takes the write
    lock up front, which also serialises concurrent writers like a row lock. Other databases
    already run the block as one transaction: nothing to do.
    """
    if conn.dialect.name != "sqlite":
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not getattr(dbapi, "in_transaction", True):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Switching to WAL writes the file header, which a mode=ro connection may not do; a WAL
    # database stays WAL for readers anyway, and a rollback-journal one is read as it is.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _mysql_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()
