"""Idempotent schema creation, and the upgrade of a database made by an older payscore."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from payscore.errors import ServiceUnavailable
from payscore.store import rollup
from payscore.store.schema import decision_rollup, metadata, scored_transactions


@dataclass
class SchemaReport:
    """What ``create_schema`` found and did."""

    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    indexes_added: list[str] = field(default_factory=list)
    rollup_rebuilt: int | None = None  # decisions counted when the rollup was back-filled


def create_schema(engine: Engine) -> SchemaReport:
    """Create missing tables and indexes; back-fill a new rollup from existing decisions."""
    report = SchemaReport()
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            metadata.create_all(conn, checkfirst=True)
            for table in metadata.sorted_tables:
                if table.name not in existing:
                    report.created.append(table.name)
                    continue
                report.present.append(table.name)
                have = {ix["name"] for ix in inspect(conn).get_indexes(table.name)}
                for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
                    if index.name not in have:
                        index.create(conn)
                        report.indexes_added.append(str(index.name))
            needs_backfill = (
                decision_rollup.name in report.created
                and conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
            )
        if needs_backfill:
            report.rollup_rebuilt = rollup.rebuild(engine)
    except OperationalError as e:
        raise ServiceUnavailable(f"cannot reach the database: {describe_db_error(e)}") from e
    except SQLAlchemyError as e:
        raise ServiceUnavailable(f"database error: {describe_db_error(e)}") from e
    return report


def describe_db_error(error: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's statement dump and background link."""
    orig = getattr(error, "orig", None)
    text = str(orig) if orig is not None else str(error)
    return text.splitlines()[0] if text else type(error).__name__
