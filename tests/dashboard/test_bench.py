"""The dashboard benchmark command works end to end on a small MariaDB table (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from payscore.dashboard import bench


@pytest.mark.integration
def test_bench_runs_on_mariadb(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--database-url", db_url, "--rows", "20000", "--repeat", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "seeded 20,000 decisions" in out and "database: mysql, 20,000 decisions" in out
    for label in bench.RANGES:
        assert f"## {label}: total" in out
    # The heavy statements use the indexes the schema provides.
    assert "key=ix_scored_scored_at" in out
    assert "key=ix_scored_status_time" in out
    assert "key=ix_scored_customer_time" in out
    # A second run reuses the table instead of seeding again.
    assert bench.main(["--database-url", db_url, "--rows", "20000", "--no-explain"]) == 0
    assert "reusing 20,000 decisions" in capsys.readouterr().out


def test_bench_runs_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    assert bench.main(["--database-url", url, "--rows", "3000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "USING INDEX ix_scored_scored_at" in out
    assert bench.main(["--database-url", url, "--rows", "5000"]) == 1
    assert "fewer than --rows" in capsys.readouterr().err
