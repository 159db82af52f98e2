"""``payscore initdb``: create the schema, idempotently."""

from __future__ import annotations

import typer

from payscore.cli.common import DatabaseUrl, console, settings_from
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema


def register(app: typer.Typer) -> None:
    app.command("initdb")(initdb)


def initdb(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
) -> None:
    """Create the decisions schema (tables and indexes); running it again is harmless."""
    settings = settings_from(ctx, database_url=database_url)
    engine = make_engine(settings)
    try:
        report = create_schema(engine)
    finally:
        engine.dispose()
    for name in report.created:
        console.print(f"created table {name}")
    for name in report.indexes_added:
        console.print(f"created index {name}")
    for name in report.columns_added:
        console.print(f"added column {name} (NULL in existing rows)")
    if report.rollup_rebuilt is not None:
        console.print(f"back-filled decision_rollup from {report.rollup_rebuilt} decisions")
    if report.frauds_counted is not None:
        console.print(
            f"counted {report.frauds_counted} fraud-labelled decisions into decision_rollup"
        )
    if report.labels_carried:
        console.print(f"carried {report.labels_carried} fraud labels over into label_events")
    if report.present:
        console.print(f"already present: {', '.join(report.present)}")
    if not report.created and not report.indexes_added and not report.columns_added:
        console.print("schema up to date; nothing created")
