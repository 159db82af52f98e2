"""Idempotent schema creation."""

from __future__ import annotations

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from payscore.errors import ServiceUnavailable
from payscore.store.schema import metadata


def create_schema(engine: Engine) -> tuple[list[str], list[str]]:
    """Create missing tables and indexes. Returns (created, already present) table names."""
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            metadata.create_all(conn, checkfirst=True)
    except OperationalError as e:
        raise ServiceUnavailable(f"cannot reach the database: {describe_db_error(e)}") from e
    except SQLAlchemyError as e:
        raise ServiceUnavailable(f"database error: {describe_db_error(e)}") from e
    names = [t.name for t in metadata.sorted_tables]
    return [n for n in names if n not in existing], [n for n in names if n in existing]


def describe_db_error(error: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump and background link."""
    orig = getattr(error, "orig", None)
    text = str(orig) if orig is not None else str(error)
    return text.splitlines()[0] if text else type(error).__name__
