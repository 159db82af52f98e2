"""Progress bars from the core's ``progress(stage, done, total)`` callbacks, and produce's list
of rejected file rows (with ``produce()`` replaced: no broker needed for what the file held)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.cli.display import progress_bar
from payscore.stream import producer
from payscore.stream.producer import ProduceOptions, ProduceStats
from payscore.stream.sources import SourceItem
from tests.conftest import make_payscore_env
from tests.core.test_paymentfile import CATALOGUE, HEADER

runner = CliRunner()


def test_bar_shows_stage_counts_and_unit_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_bar(console) as progress:
        progress("computing features", 20_000, 50_000)
        progress("computing features", 50_000, 50_000)
    shown = out.getvalue()
    assert "computing features" in shown and "50,000/50,000 payments" in shown


def test_bar_draws_nothing_off_a_terminal() -> None:
    out = io.StringIO()
    with progress_bar(Console(file=out, force_terminal=False)) as progress:
        progress("computing features", 1, 2)
    assert out.getvalue() == ""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the Kafka side of produce with a list of the transaction ids it would send."""
    ids: list[str] = []

    def fake_produce(settings, source: Iterable[SourceItem], options: ProduceOptions, **kw):  # type: ignore[no-untyped-def]
        stats = ProduceStats()
        for item in source:
            ids.append(item.payment.transaction_id)
            stats.payments += 1
            stats.sent += 1
        kw["on_progress"](stats)
        return stats

    monkeypatch.setattr(producer, "produce", fake_produce)  # the command imports it when run
    return ids


def test_produce_from_a_file_skips_and_lists_bad_rows(sent, tmp_path: Path) -> None:
    src, rejects = tmp_path / "p.csv", tmp_path / "rejects.csv"
    bad = [text for _, text, field in CATALOGUE if field not in ("ok", None)][:3]
    good = [text for _, text, field in CATALOGUE if field == "ok"]
    src.write_text("\n".join([HEADER, *good, *bad]) + "\n")
    args = ["produce", "--from", str(src), "--rate", "0", "--rejects", str(rejects)]
    result = runner.invoke(app, args, env=make_payscore_env())
    assert result.exit_code == 0, result.output
    assert sent == ["g19", "g20"]
    assert "line 4: schema: event_time: Input should have timezone info" in result.output
    assert f"3 rows of {src} rejected (not sent)" in result.output
    with rejects.open(newline="") as f:
        assert [int(r["line"]) for r in csv.DictReader(f)] == [4, 5, 6]


def test_produce_from_a_file_with_no_usable_row_fails(sent, tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_text(f"{HEADER}\nx,c,t,inf,EUR,2018-04-02T00:00:00Z,0\n")
    result = runner.invoke(app, ["produce", "--from", str(src)], env=make_payscore_env())
    assert result.exit_code == 1, result.output
    assert sent == []
    assert "no usable payments; all 1 row rejected (1 schema)" in result.output


def test_produce_rejects_needs_a_file(sent, tmp_path: Path) -> None:
    args = ["produce", "--rejects", str(tmp_path / "r.csv")]
    result = runner.invoke(app, args, env=make_payscore_env())
    assert result.exit_code == 2 and "--rejects" in result.output
