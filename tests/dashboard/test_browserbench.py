"""The browser benchmark's code path on a small MariaDB table: bulk seeding, topping up, and
every timed action in a real Chromium (behaviour only, never a time)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from payscore.config import Settings
from payscore.dashboard import browserbench
from payscore.dashboard.bulkseed import seed_fast, top_up
from payscore.dashboard.figures import utc_now
from payscore.dashboard.seed import label_for, synthetic_rows
from payscore.store.engine import make_engine
from payscore.store.rollup import COUNT_COLUMNS, summarise
from payscore.store.schema import (
    dead_letters,
    decision_rollup,
    fraud_labels,
    label_events,
    scored_transactions,
)

ROWS, SPAN = 3_000, 6 * 3600


def _rollup(conn: object) -> dict[tuple[int, object], tuple[int, ...]]:
    rows = conn.execute(select(decision_rollup)).mappings().all()  # type: ignore[attr-defined]
    return {(r["grain"], r["bucket"]): tuple(r[c] for c in COUNT_COLUMNS) for r in rows}


@pytest.mark.integration
def test_bulk_seed_and_top_up_match_the_generator(db_url: str) -> None:
    """LOAD DATA seeding stores exactly the generator's rows, labels and dead letters, counted
    into the rollup; a top-up continues at the table's rate up to the present."""
    now = utc_now().replace(microsecond=0)
    engine = make_engine(Settings(database_url=db_url))
    try:
        summary = seed_fast(engine, ROWS, now=now, span_seconds=SPAN, seed=5, chunk=700)
        rows = list(synthetic_rows(ROWS, now=now, span_seconds=SPAN, seed=5))
        labels = [lab for lab in map(label_for, rows) if lab]
        assert (summary.decisions, summary.labels, summary.dead_letters) == (ROWS, len(labels), 6)
        st = scored_transactions.c
        with engine.connect() as conn:
            stored = conn.execute(
                select(st.transaction_id, st.status, st.score, st.scored_at, st.amount)
            ).all()
            assert len(stored) == ROWS
            by_id = {r.transaction_id: r for r in stored}
            for row in rows[:: ROWS // 50]:
                got = by_id[row["transaction_id"]]
                assert (got.status, got.score, got.scored_at) == (
                    row["status"],
                    row["score"],
                    row["scored_at"],
                )
                assert float(got.amount) == pytest.approx(row["amount"], abs=0.005)
            assert conn.execute(select(func.count()).select_from(fraud_labels)).scalar() == len(
                labels
            )
            assert conn.execute(select(func.count()).select_from(label_events)).scalar() == len(
                labels
            )
            assert conn.execute(select(func.count()).select_from(dead_letters)).scalar() == 6
            frauds = conn.execute(
                select(func.count()).select_from(fraud_labels).where(fraud_labels.c.is_fraud)
            ).scalar()
            assert frauds == sum(lab["is_fraud"] for lab in labels)
            want = {
                (r["grain"], r["bucket"]): tuple(r[c] for c in COUNT_COLUMNS)
                for r in summarise(rows)
            }
            assert _rollup(conn) == want

        # An hour later the same table is topped up at its own rate, ids apart from the first.
        later = now + timedelta(hours=1)
        added = top_up(engine, now=later, progress=lambda _n: None)
        rate = (ROWS - 1) / (rows[-1]["scored_at"] - rows[0]["scored_at"]).total_seconds()
        assert added == int((later - rows[-1]["scored_at"]).total_seconds() * rate)
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(scored_transactions)).scalar()
            newest = conn.execute(select(func.max(st.scored_at))).scalar()
            counted = conn.execute(
                select(func.sum(decision_rollup.c.decisions)).where(decision_rollup.c.grain == 60)
            ).scalar()
        assert total == ROWS + added and counted == total
        assert later - timedelta(seconds=10) <= newest <= later
        assert top_up(engine, now=later, progress=lambda _n: None) == 0  # already current
    finally:
        engine.dispose()


def _table(out: str) -> dict[str, list[str]]:
    """The report's rows: action -> cells."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 7 and cells[0] != "action":
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.browser
@pytest.mark.integration
def test_browser_bench_drives_every_action(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(browserbench.CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {browserbench.CHROMIUM} (apt-get install chromium)"
        )
    shot = tmp_path / "shot.png"
    argv = ["--database-url", db_url, "--rows", str(ROWS), "--span-days", "0.5", "--runs", "2"]
    assert browserbench.main([*argv, "--screenshot", str(shot)]) == 0
    out = capsys.readouterr().out
    assert f"seeded {ROWS:,} decisions" in out, out
    table = _table(out)
    actions = [
        f"{browserbench.FLOOR_LOAD}, new browser profile",
        f"{browserbench.FLOOR_LOAD}, assets cached",
        *(
            f"{browserbench.floor_extra(extra)}, {visit}"
            for extra in ("chart", "metrics", "html")
            for visit in ("new browser profile", "assets cached")
        ),
        "first load, new browser profile (Last hour)",
        "first load, assets cached (Last hour)",
        *(f"range change to {r}" for r in browserbench.RANGES),
        *(f"tab switch to {t} (Last day)" for t in (*browserbench.SWITCHES, "Customer")),
        browserbench.FIRST_LOOKUP,
        *(f"customer lookup at {r}" for r in browserbench.LOOKUP_RANGES),
    ]
    assert list(table) == actions, out
    for action, (runs, median, worst, goal, met, parts) in table.items():
        assert runs == "2", (action, runs)
        m, w = (float(x.removesuffix(" s")) for x in (median, worst))
        assert 0 < m <= w, (action, median, worst)
        to_start, script, draw = (float(x) for x in parts.removesuffix(" s").split(" / "))
        assert min(to_start, script, draw) >= 0 and to_start + script <= w + 0.01, (action, parts)
        limit = browserbench.goal_of(action)
        assert goal == ("-" if limit is None else f"< {limit:g} s")
        assert met in ({"-"} if limit is None else {"yes", "no", "median only"})
    # The floor is a reference, not held to a goal; the session's first lookup is a lookup.
    assert table[f"{browserbench.FLOOR_LOAD}, assets cached"][3] == "-"
    assert table["floor + one Vega-Lite chart, assets cached"][3] == "-"
    assert table[browserbench.FIRST_LOOKUP][3] == f"< {browserbench.GOALS['customer lookup']:g} s"
    # The headline the page showed per range is the database's count (nothing written since;
    # the seeded span is half a day, so Last day, Last 7 days and All time hold everything).
    shown = dict(re.findall(r"(Last hour|Last day|Last 7 days|All time) (\d[\d,]*\d|\d)", out))
    assert {shown[r] for r in browserbench.RANGES} == {f"{ROWS:,}"}, out
    assert 0 < int(shown["Last hour"].replace(",", "")) < ROWS
    assert shot.stat().st_size > 20_000
    assert Counter(re.findall(r"load average", out))["load average"] == 2

    # Run again: the table is reused (and topped up to the present), not seeded twice.
    assert browserbench.main([*argv, "--runs", "1"]) == 0
    again = capsys.readouterr().out
    assert "reusing" in again and "seeded" not in again, again


def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        browserbench.main(["--runs", "0"])
    assert exit_.value.code == 2
    assert "--runs must be 1-100" in capsys.readouterr().err
    db = tmp_path / "b.db"
    argv = ["--database-url", f"sqlite:///{db}", "--rows", "10", "--chromium", "/no/such"]
    assert browserbench.main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        "error: Chromium not found at /no/such (apt-get install chromium)"
    )
    assert not db.exists()  # checked before any work
