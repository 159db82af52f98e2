"""The benchmark's database ceiling: same rows as the consumer writes, scratch database only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from payscore.bench.probe import Probe
from payscore.bench.scratch import (
    ceiling_rows,
    measure_db_ceiling,
    scratch_database,
    scratch_settings,
)
from payscore.config import LoadedSettings, Settings
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
    rows = ceiling_rows(_payments(3), datetime(2026, 1, 1))
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


@pytest.mark.parametrize(
    ("url", "password"),
    [("mysql://bench:p%40ss%20w@db:3306/prod", None), ("mysql://bench@db:3306/prod", "p@ss w")],
)
def test_scratch_settings_keep_the_password_a_secret(url: str, password: str | None) -> None:
    """Wherever the user put the password, the scratch URL holds none: it is shown in full."""
    secret = None if password is None else SecretStr(password)
    scratch = scratch_settings(Settings(database_url=url, database_password=secret), "scratch")
    assert scratch.database_url == "mysql://bench@db:3306/scratch"
    assert scratch.database_password is not None
    assert scratch.database_password.get_secret_value() == "p@ss w"
    shown = " ".join(v for _, v, _ in LoadedSettings(scratch, {}).rows())
    assert "p@ss" not in repr(scratch) and "p@ss" not in shown and "p%40ss" not in shown


@pytest.mark.integration
def test_a_mysql_scratch_database_never_shows_the_password(
    mariadb_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[Any]
) -> None:
    url = sa.engine.make_url(mariadb_url)
    password = str(url.password)
    settings = Settings(database_url=mariadb_url)
    caplog.set_level("DEBUG")
    with scratch_database(settings, "ceiling") as scratch:
        assert password not in scratch.database_url and password not in repr(scratch)
        assert scratch.database_password is not None
        assert scratch.database_url.endswith("_ceiling")
    assert measure_db_ceiling(settings, _payments(50), batch_size=25) > 0
    out, err = capsys.readouterr()
    assert password not in caplog.text + out + err


def _record(partition: int, offset: int, sent_ms: float) -> SimpleNamespace:
    return SimpleNamespace(topic="t", partition=partition, offset=offset, timestamp=sent_ms)


def test_probe_leaves_out_the_earliest_sent_not_the_first_decided() -> None:
    pipeline = SimpleNamespace(prepare=lambda messages: messages, write=lambda batch: None)
    probe = Probe(pipeline, since_ms=1_000.0)
    # sent at 900 (before the run: never counted), 1000, 1001, 1002 and 1003 ms; the batch
    # holding the two latest is committed first.
    early = [_record(0, 0, 900.0), _record(0, 1, 1_000.0), _record(0, 2, 1_001.0)]
    late = [_record(1, 0, 1_002.0), _record(1, 1, 1_003.0)]
    for records in (late, early):
        pipeline.prepare(records)
        rows = [
            {"kafka_topic": r.topic, "kafka_partition": r.partition, "kafka_offset": r.offset}
            for r in records
        ]
        pipeline.write(SimpleNamespace(decided=records, rows=rows))
    assert len(probe.latencies) == 4 and sorted(probe.sent_ms) == [1000, 1001, 1002, 1003]
    after_two = probe.latencies_after(2)
    by_sent = dict(zip(probe.sent_ms, probe.latencies, strict=True))
    assert after_two == [by_sent[1002.0], by_sent[1003.0]]
    assert probe.latencies_after(0) == [by_sent[t] for t in sorted(by_sent)]
