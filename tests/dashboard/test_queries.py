"""The dashboard's SQL against seeded databases, every figure recomputed here in plain Python."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from payscore.config import Settings
from payscore.dashboard import lookups
from payscore.dashboard import queries as q
from payscore.dashboard.figures import (
    TimeRange,
    bin_name,
    choose_bin,
    floor_time,
    percentile,
    time_axis_format,
)
from payscore.dashboard.leaders import riskiest_candidates
from payscore.dashboard.rollups import Plan, plan
from payscore.dashboard.seed import seed_database
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.rollup import rebuild
from payscore.store.schema import decision_rollup
from tests.dashboard.seed import BURST_ROWS, BURST_SECONDS, PROFILE_CUSTOMER, Seeded, seed_small

NOW = datetime(2030, 1, 15, 12, 0, 0, 500_000)


@pytest.fixture(scope="module")
def sqlite_seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Seeded]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'q.db'}"
    writer = make_engine(Settings(database_url=url))
    create_schema(writer)
    seeded = seed_small(writer, NOW)
    writer.dispose()
    reader = make_engine(Settings(database_url=url), read_only=True)
    yield reader, seeded
    reader.dispose()


@pytest.fixture
def mariadb_seeded(db_url: str) -> Iterator[tuple[Engine, Seeded]]:
    writer = make_engine(Settings(database_url=db_url))
    seeded = seed_small(writer, NOW)
    writer.dispose()
    reader = make_engine(Settings(database_url=db_url), read_only=True)
    yield reader, seeded
    reader.dispose()


def _in(tr: TimeRange, when: datetime) -> bool:
    return (tr.start is None or when >= tr.start) and (tr.end is None or when < tr.end)


RANGES = [
    TimeRange(NOW - timedelta(minutes=15), NOW),
    TimeRange(NOW - timedelta(hours=1), NOW),
    TimeRange(NOW - timedelta(days=1), NOW),
    TimeRange(None, None),
]


def check_all(engine: Engine, s: Seeded) -> None:
    with engine.connect() as conn:
        assert q.missing_tables(conn) == []
        for tr in RANGES:
            check_headline(conn, s, tr)
            check_activity(conn, s, tr)
            check_activity_chart(conn, s, tr)
            check_histogram(conn, s, tr)
            check_latest(conn, s, tr)
            check_riskiest(conn, s, tr)
        check_riskiest_leaders(conn)
        check_rollup_matches_table(conn)
        check_burst(conn, s)
        check_review_queue(conn, s)
        check_profile(conn, s)
        model = lookups.latest_model(conn)
        assert model is not None and model["version"] == s.model["version"]
        assert model["metadata"]["thresholds"] == {"review": 0.5, "decline": 0.8}


def check_headline(conn: Any, s: Seeded, tr: TimeRange) -> None:
    rows = [r for r in s.rows if _in(tr, r["scored_at"])]
    h = q.headline(conn, tr)
    counts = Counter(r["status"] for r in rows)
    assert h.decided == len(rows) > 0
    assert h.counts == {k: counts.get(k, 0) for k in ("APPROVED", "REVIEW", "DECLINED")}
    assert h.rate("DECLINED") == counts["DECLINED"] / len(rows)
    fraud = sum(1 for r in rows if s.labels.get(r["transaction_id"], {}).get("is_fraud"))
    assert h.fraud_labelled == fraud and h.fraud_rate == fraud / len(rows)
    assert h.dead_letters == sum(1 for d in s.dead if _in(tr, d["created_at"]))
    # Throughput is over the active period (first to last decision), not the whole range.
    times = [r["scored_at"] for r in rows]
    active = (max(times) - min(times)).total_seconds()
    assert h.active_seconds == pytest.approx(active)
    assert h.throughput_per_second == pytest.approx(len(rows) / active)
    # Latency over the newest decisions: the page's sample, and one smaller than the range.
    by_time = sorted(rows, key=lambda r: r["scored_at"], reverse=True)
    for sample in (q.LATENCY_SAMPLE, 100):
        got = h if sample == q.LATENCY_SAMPLE else q.headline(conn, tr, sample=sample)
        newest = by_time[:sample]
        lat = sorted((r["scored_at"] - r["received_at"]).total_seconds() * 1000 for r in newest)
        assert got.latency_sample == len(lat)
        assert got.latency_median_ms == pytest.approx(lat[math.ceil(0.5 * len(lat)) - 1])
        assert got.latency_p99_ms == pytest.approx(lat[math.ceil(0.99 * len(lat)) - 1])


def _expected_bins(s: Seeded, tr: TimeRange, seconds: int) -> Counter[tuple[datetime, str]]:
    """Decisions per (bin start, column), bins counted from midnight in plain arithmetic."""
    expected: Counter[tuple[datetime, str]] = Counter()
    for r in s.rows:
        if _in(tr, r["scored_at"]):
            t = r["scored_at"]
            bucket = datetime(t.year, t.month, t.day) + timedelta(
                seconds=(t - datetime(t.year, t.month, t.day)).total_seconds() // seconds * seconds
            )
            expected[(bucket, "payments")] += 1
            expected[(bucket, r["status"].lower())] += 1
    return expected


def _bins(frame: Any) -> dict[tuple[datetime, str], int]:
    got = {}
    for row in frame.itertuples():
        for col in ("payments", "approved", "review", "declined"):
            if getattr(row, col):
                got[(row.bucket.to_pydatetime(), col)] = getattr(row, col)
    return got


def check_activity(conn: Any, s: Seeded, tr: TimeRange) -> None:
    for seconds in (1, 10, 60, 300, 3600, 7200, 86400):
        if seconds < 60 and tr.start is None:
            continue  # a per-second GROUP BY over all time is what activity_chart avoids
        frame = q.activity(conn, tr, seconds)
        assert _bins(frame) == dict(_expected_bins(s, tr, seconds)), seconds
        assert list(frame["bucket"]) == sorted(frame["bucket"])


def check_activity_chart(conn: Any, s: Seeded, tr: TimeRange) -> None:
    """The bin comes from the decisions in the range; every bin between first and last shows,
    empty ones as zeros."""
    times = [r["scored_at"] for r in s.rows if _in(tr, r["scored_at"])]
    seconds, frame = q.activity_chart(conn, tr, len(times))
    assert seconds == choose_bin(min(times), max(times), len(times))
    assert _bins(frame) == dict(_expected_bins(s, tr, seconds))
    first, last = floor_time(min(times), seconds), floor_time(max(times), seconds)
    assert len(frame) == (last - first).total_seconds() / seconds + 1 <= 120
    assert frame["bucket"].iloc[0] == first and frame["bucket"].iloc[-1] == last
    assert (frame["bucket"].diff().dropna() == timedelta(seconds=seconds)).all()


def check_burst(conn: Any, s: Seeded) -> None:
    """A demo's decisions, all within one minute, under a day-long range: per-second bins,
    24-hour labels, and throughput over the 40 active seconds, not over the day."""
    day = TimeRange(s.burst_end - timedelta(hours=23), s.burst_end + timedelta(hours=1))
    seconds, frame = q.activity_chart(conn, day, BURST_ROWS)
    assert (seconds, bin_name(seconds)) == (2, "2 seconds")
    assert len(frame) >= BURST_SECONDS / 2 and frame["payments"].sum() == BURST_ROWS
    assert frame["bucket"].iloc[0].hour == 22
    assert time_axis_format(seconds, BURST_SECONDS) == "%H:%M:%S"
    h = q.headline(conn, day)
    assert h.decided == BURST_ROWS
    assert BURST_SECONDS - 1 < h.active_seconds <= BURST_SECONDS
    assert h.throughput_per_second == pytest.approx(BURST_ROWS / h.active_seconds)


def check_histogram(conn: Any, s: Seeded, tr: TimeRange) -> None:
    frame = q.score_histogram(conn, tr)
    expected = [0] * q.SCORE_BINS
    for r in s.rows:
        if _in(tr, r["scored_at"]):
            expected[min(int(r["score"] * q.SCORE_BINS), q.SCORE_BINS - 1)] += 1
    assert list(frame["payments"]) == expected
    assert frame["score_from"].iloc[-1] == pytest.approx(0.95)


def check_latest(conn: Any, s: Seeded, tr: TimeRange) -> None:
    def expect(pred: Any, limit: int = 200) -> list[str]:
        rows = [r for r in s.rows if _in(tr, r["scored_at"]) and pred(r)]
        rows.sort(key=lambda r: r["scored_at"], reverse=True)
        return [r["transaction_id"] for r in rows[:limit]]

    def got(flt: q.DecisionFilter, limit: int = 200) -> list[str]:
        return list(q.latest_decisions(conn, tr, flt, limit)["transaction_id"])

    assert got(q.DecisionFilter()) == expect(lambda r: True)
    assert got(q.DecisionFilter(), 7) == expect(lambda r: True, 7)
    # A list is fetched one row longer than shown, even at the cap, so the page can say
    # "capped"; never more.
    everything = expect(lambda r: True, len(s.rows))
    assert got(q.DecisionFilter(), 8) == everything[:8]
    assert len(got(q.DecisionFilter(), 10**6)) == min(len(everything), q.FETCH_CAP)
    assert got(q.DecisionFilter(status="REVIEW")) == expect(lambda r: r["status"] == "REVIEW")
    customer = s.rows[5]["customer_id"]
    assert got(q.DecisionFilter(customer_id=customer)) == expect(
        lambda r: r["customer_id"] == customer
    )
    terminal = s.rows[9]["terminal_id"]
    assert got(q.DecisionFilter(terminal_id=terminal, status="APPROVED")) == expect(
        lambda r: r["terminal_id"] == terminal and r["status"] == "APPROVED"
    )
    velocity = expect(lambda r: "VELOCITY" in r["reason_codes"], 100)
    assert list(q.velocity_alerts(conn, tr)["transaction_id"]) == velocity
    # '%' and '_' typed by the analyst are literal characters, not wildcards.
    assert got(q.DecisionFilter(reason="50%")) == expect(lambda r: "50%" in r["reason_codes"])
    assert got(q.DecisionFilter(reason="A_B")) == expect(lambda r: "A_B" in r["reason_codes"])
    assert got(q.DecisionFilter(reason="%")) == expect(lambda r: "%" in r["reason_codes"])
    assert got(q.DecisionFilter(customer_id="' OR 1=1 --")) == []


def check_riskiest(conn: Any, s: Seeded, tr: TimeRange) -> None:
    for column in ("customer_id", "terminal_id"):
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in s.rows:
            if _in(tr, r["scored_at"]) and r["status"] != "APPROVED":
                groups.setdefault(r[column], []).append(r)
        expected = []
        for key, rs in groups.items():
            declined = sum(r["status"] == "DECLINED" for r in rs)
            top = max(r["score"] for r in rs)
            expected.append((-declined, -(len(rs) - declined), -top, key))
        expected.sort()
        frame = q.riskiest(conn, column, tr)
        assert list(frame[column]) == [e[3] for e in expected[:20]]
        assert list(frame["declined"]) == [-e[0] for e in expected[:20]]
        assert list(frame["max_score"]) == pytest.approx([-e[2] for e in expected[:20]])


def check_riskiest_leaders(conn: Any) -> None:
    """Ranking only the leaders by declines gives exactly the one-query ranking of the whole
    range, ties at the cut included, at every place count."""
    pruned = 0
    for tr in odd_ranges():
        for column in ("customer_id", "terminal_id"):
            for limit in (1, 3, 20):
                whole = [tuple(r) for r in conn.execute(q.stmt_riskiest(column, tr, limit))]
                frame = q.riskiest(conn, column, tr, limit)
                got = list(frame.itertuples(index=False, name=None))
                assert [g[:4] for g in got] == [w[:4] for w in whole], (tr, column, limit)
                scores = [float(v) for w in whole for v in w[4:]]
                assert [v for g in got for v in g[4:]] == pytest.approx(scores)
                pruned += riskiest_candidates(conn, column, tr, limit) is not None
    assert pruned > 20  # the leaders' path ran, not only the fallback


def odd_ranges() -> list[TimeRange]:
    """Ranges with partial minutes and hours at either end, open ends, and tiny spans."""
    rng = random.Random(11)
    out = [
        *RANGES,
        TimeRange(None, NOW - timedelta(minutes=30)),
        TimeRange(NOW - timedelta(hours=5), None),
    ]
    out.append(TimeRange(NOW - timedelta(seconds=20), NOW - timedelta(seconds=5)))
    out.append(TimeRange(datetime(2030, 1, 15, 9, 0), datetime(2030, 1, 15, 11, 0)))
    for _ in range(16):  # most seeded rows are in the last 3 hours; a few 3 days before
        start = NOW - timedelta(seconds=rng.uniform(0, 3.5 * 3600))
        out.append(TimeRange(start, start + timedelta(seconds=rng.uniform(30, 4 * 3600))))
        start = NOW - timedelta(seconds=rng.uniform(0, 4 * 86400))
        out.append(TimeRange(start, start + timedelta(seconds=rng.uniform(30, 3 * 86400))))
    return out


def check_rollup_matches_table(conn: Any) -> None:
    """The rollup path gives exactly the base-table figures, for any range."""
    for tr in odd_ranges():
        assert q.status_counts(conn, tr, rollup=True) == q.status_counts(conn, tr, rollup=False)
        fast, slow = q.score_histogram(conn, tr, True), q.score_histogram(conn, tr, False)
        assert fast.equals(slow), tr
        for seconds in (60, 300, 3600, 7200, 86400):
            fast = q.activity(conn, tr, seconds, rollup=True)
            slow = q.activity(conn, tr, seconds, rollup=False)
            assert fast.equals(slow), (tr, seconds)


def check_review_queue(conn: Any, s: Seeded) -> None:
    waiting = [r for r in s.rows if r["status"] == "REVIEW" and r["transaction_id"] not in s.labels]
    order = {r["transaction_id"]: i for i, r in enumerate(s.rows)}  # insertion order = id
    waiting.sort(key=lambda r: (r["event_time"], order[r["transaction_id"]]))
    frame = lookups.review_queue(conn, 20)
    assert lookups.review_backlog(conn) == len(waiting) > 20
    assert lookups.review_backlog(conn, cap=10) == 10
    assert list(frame["transaction_id"]) == [r["transaction_id"] for r in waiting[:20]]


def check_profile(conn: Any, s: Seeded) -> None:
    assert lookups.customer_profile(conn, "nobody") is None
    p = lookups.customer_profile(conn, PROFILE_CUSTOMER)
    assert p is not None
    amounts = [r["amount"] for r in s.rows if r["customer_id"] == PROFILE_CUSTOMER]
    assert p.payments == len(amounts) == 13
    assert p.mean_amount == pytest.approx(float(np.mean(amounts)), rel=1e-6)
    assert p.std_amount == pytest.approx(float(np.std(amounts)), rel=1e-5)
    assert p.usual_per_day == pytest.approx(13 / 12)
    assert (p.last_hour, p.last_day) == (3, 4)  # windows are (last - w, last]
    assert p.statuses == {"APPROVED": 10, "REVIEW": 3}
    history = lookups.customer_history(conn, PROFILE_CUSTOMER)
    assert list(history["transaction_id"]) == [f"sp-prof-{i:02d}" for i in range(12, -1, -1)]


def test_queries_sqlite(sqlite_seeded: tuple[Engine, Seeded]) -> None:
    check_all(*sqlite_seeded)


@pytest.mark.integration
def test_queries_mariadb(mariadb_seeded: tuple[Engine, Seeded]) -> None:
    check_all(*mariadb_seeded)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_choose_bin_follows_the_data() -> None:
    def pick(seconds: float, decisions: int) -> int:
        return choose_bin(NOW - timedelta(seconds=seconds), NOW, decisions)

    assert pick(6, 20_000) == 1  # a demo run: 7 one-second bins rather than one minute
    assert pick(0, 1) == 1
    assert pick(40, 300) == 2  # 21 bins of ~14 decisions
    assert pick(20 * 60, 400) == 60  # 21 bins of ~19
    assert pick(20 * 60, 100_000) == 15  # 121 bins of 10 s would be too many
    assert pick(3600, 15) == 300  # too few for 10 a bin: still 13 bins
    assert pick(3600, 100_000) == 60  # minutes from the rollup, though 30 s would fit 121 bins
    assert pick(28 * 60, 100_000) == 15  # 29 minutes draw too coarse a line
    assert pick(3 * 3600, 10**6) == 120
    assert pick(2 * 86400, 10**6) == 1800
    assert pick(29 * 86400, 10**6) == 21600
    assert pick(400 * 86400, 10**6) == 86400  # days, even beyond 120 of them
    assert choose_bin(None, None, 0) == 60
    assert [bin_name(n) for n in (1, 10, 60, 300, 3600, 21600, 86400)] == [
        "second", "10 seconds", "minute", "5 minutes", "hour", "6 hours", "day",
    ]  # fmt: skip


def test_time_axis_is_24_hour() -> None:
    assert time_axis_format(1, 40) == "%H:%M:%S"
    assert time_axis_format(60, 3600) == "%H:%M"
    assert time_axis_format(3600, 3 * 86400) == "%m-%d %H:%M"
    assert time_axis_format(86400, 90 * 86400) == "%Y-%m-%d"
    assert floor_time(datetime(2030, 1, 5, 22, 16, 7, 900), 5) == datetime(2030, 1, 5, 22, 16, 5)
    assert floor_time(datetime(2030, 1, 5, 22, 16, 7), 86400) == datetime(2030, 1, 5)


def test_empty_database_gives_zeros(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    create_schema(make_engine(Settings(database_url=url)))
    with make_engine(Settings(database_url=url), read_only=True).connect() as conn:
        h = q.headline(conn, TimeRange(None, None))
        assert (h.decided, h.fraud_rate, h.latency_p99_ms) == (0, None, None)
        assert q.activity_chart(conn, TimeRange(None, None), 0)[1].empty
        assert lookups.review_backlog(conn) == 0 and lookups.review_queue(conn).empty
        assert lookups.latest_model(conn) is None


def test_missing_schema_is_reported(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'blank.db'}"
    with make_engine(Settings(database_url=url)).connect() as conn:
        assert "scored_transactions" in q.missing_tables(conn)


def test_seed_database_fills_the_rollup(tmp_path: Any) -> None:
    """seed_database counts its decisions into the rollup exactly as rebuild() would."""
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}"))
    create_schema(engine)
    seed_database(engine, 2_500, now=NOW, span_seconds=2 * 86400, batch_size=700)

    def rollup_rows() -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(
                select(decision_rollup).order_by(decision_rollup.c.grain, decision_rollup.c.bucket)
            ).all()

    seeded = rollup_rows()
    assert rebuild(engine) == 2_500
    assert rollup_rows() == seeded and len(seeded) > 48
    engine.dispose()


def test_plan_pieces_are_aligned() -> None:
    tr = TimeRange(datetime(2030, 1, 1, 8, 59, 30, 5), datetime(2030, 1, 1, 12, 1, 10))
    p = plan(tr)
    assert p.edges == (
        TimeRange(tr.start, datetime(2030, 1, 1, 9, 0)),
        TimeRange(datetime(2030, 1, 1, 12, 1), tr.end),
    )
    assert p.minutes == (TimeRange(datetime(2030, 1, 1, 12, 0), datetime(2030, 1, 1, 12, 1)),)
    assert p.hours == TimeRange(datetime(2030, 1, 1, 9, 0), datetime(2030, 1, 1, 12, 0))
    inside = TimeRange(datetime(2030, 1, 1, 8, 0, 10), datetime(2030, 1, 1, 8, 0, 50))
    assert plan(inside) == Plan(None, (), (inside,))
    assert plan(TimeRange(None, None)) == Plan(TimeRange(None, None), (), ())
