"""Idempotent schema creation, and the upgrade of a database made by an older payscore."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn

from payscore.errors import PayscoreError
from payscore.store import labels, rollup
from payscore.store.engine import database_error
from payscore.store.schema import decision_rollup, metadata, scored_transactions


@dataclass
class SchemaReport:
    """What ``create_schema`` found and did."""

    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    indexes_added: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)  # "table.column", an upgrade
    rollup_rebuilt: int | None = None  # decisions counted when the rollup was back-filled
    frauds_counted: int | None = None  # fraud-labelled decisions counted into the rollup anew
    labels_carried: int = 0  # fraud_labels rows copied into label_events (an upgrade)


def create_schema(engine: Engine) -> SchemaReport:
    """Create missing tables and indexes; back-fill a new rollup from existing decisions, its
    fraud counts where they are missing (an upgrade, or labels loaded around the label
    writers), and the label history from existing labels."""
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
                report.columns_added += add_missing_columns(conn, table)
                have = {ix["name"] for ix in inspect(conn).get_indexes(table.name)}
                for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
                    if index.name not in have:
                        index.create(conn)
                        report.indexes_added.append(str(index.name))
            # Every run, not only when label_events is new: on MariaDB the DDL above commits
            # on its own, so a run that failed after it must still carry the rows over.
            report.labels_carried = labels.carry_over(conn)
            needs_backfill = (
                decision_rollup.name in report.created
                and conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
            )
        if needs_backfill:
            report.rollup_rebuilt = rollup.rebuild(engine)
        else:
            # Apart from the ALTER above: on MariaDB it commits on its own, so a run that
            # failed after it finds the NULLs again.
            with engine.connect() as conn:
                uncounted = rollup.frauds_uncounted(conn)
            if uncounted:
                report.frauds_counted = rollup.recount_frauds(engine)
    except SQLAlchemyError as e:
        raise database_error(e, engine.url) from e
    return report


def add_missing_columns(conn: Connection, table: Table) -> list[str]:
    """Add the columns a newer payscore declares and an older database lacks.

    Only nullable columns without a key can be added to a table that holds rows (they read
    NULL for the old rows); anything else is a clear error rather than a guess. The DDL is
    built from the schema's own names and types, never from input.
    """
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    added = []
    for column in table.columns:
        if column.name in have:
            continue
        if not column.nullable or column.primary_key:
            raise PayscoreError(
                f"table {table.name} lacks the required column {column.name}; "
                "it cannot be added to existing rows (migrate it by hand)"
            )
        quote = conn.dialect.identifier_preparer.quote
        spec = CreateColumn(column).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {spec}"))
        added.append(f"{table.name}.{column.name}")
    return added


def upgrade(engine: Engine) -> SchemaReport | None:
    """``create_schema`` only if a table or column of this payscore is missing, as when a
    consumer starts on a database made by an older version; None when nothing was missing."""
    try:
        with engine.connect() as conn:
            seen = inspect(conn)
            tables = set(seen.get_table_names())
            missing = any(
                t.name not in tables
                or {c.name for c in t.columns} - {c["name"] for c in seen.get_columns(t.name)}
                for t in metadata.sorted_tables
            )
    except SQLAlchemyError as e:
        raise database_error(e, engine.url) from e
    return create_schema(engine) if missing else None
