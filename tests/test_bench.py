"""The benchmark's database ceiling: same rows as the consumer writes, scratch database only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from payscore.bench import _ceiling_rows, measure_db_ceiling
from payscore.config import Settings
from payscore.core.schema import Payment
from payscore.store.schema import scored_transactions


def _payments(n: int) -> list[Payment]:
    start = datetime(2018, 8, 1, tzinfo=timezone.utc)
    return [
        Payment(
            transaction_id=f"t{i}",
            customer_id=f"c{i % 7}",
            terminal_id=f"x{i % 11}",
            amount=Decimal("12.34"),
            currency="EUR",
            event_time=start + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def test_ceiling_rows_fit_the_decisions_table() -> None:
    rows = _ceiling_rows(_payments(3), datetime(2026, 1, 1))
    assert set(rows[0]) <= set(scored_transactions.c.keys())
    assert [r["kafka_offset"] for r in rows] == [0, 1, 2]
    assert rows[0]["event_time"] == datetime(2018, 8, 1)


def test_ceiling_writes_only_to_a_scratch_database(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    settings = Settings(database_url=f"sqlite:///{real}")
    rate = measure_db_ceiling(settings, _payments(400), batch_size=100)
    assert rate > 0
    assert (
        not real.exists() or not sa.inspect(sa.create_engine(f"sqlite:///{real}")).get_table_names()
    )
