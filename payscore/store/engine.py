"""Creating engines late, with driver-specific care, and turning driver errors into ours."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from payscore.config import Settings, mask_url
from payscore.errors import MissingExtra, ServiceUnavailable

#: Errors that mean the database could not be reached or used at all (as opposed to a refused
#: statement): the server is down, the address or credentials are wrong, or the pool is empty.
_UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


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
    url = make_url(settings.sqlalchemy_url())
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


def database_error(error: SQLAlchemyError, url: str | None = None) -> ServiceUnavailable:
    """The one wording of a database failure: what failed, where, then the driver's text.

    ``url`` is shown with its password masked; the driver's message is only the detail.
    """
    where = f" at {mask_url(url)}" if url else ""
    if isinstance(error, _UNREACHABLE):
        return ServiceUnavailable(f"cannot reach the database{where}: {driver_message(error)}")
    return ServiceUnavailable(f"database error{where}: {driver_message(error)}")


def driver_message(error: BaseException) -> str:
    """The driver's own text, first line only, without SQLAlchemy's statement dump.

    mysqlclient's errors are ``(code, text)`` tuples; they read as ``text (MySQL error code)``.
    """
    orig = getattr(error, "orig", None) or error
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (MySQL error {args[0]})"
    else:
        text = str(orig)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(orig).__name__


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
