"""The pure parts of ``payscore produce``: pacing, fault injection, file sources, labels."""

from __future__ import annotations

import json
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from payscore.core.schema import InvalidMessage, Payment, parse_payment, payment_to_json
from payscore.errors import InputError
from payscore.stream import producer as prod
from payscore.stream import sources

T0 = datetime(2018, 8, 1, 10, 0, tzinfo=timezone.utc)


def _payment(i: int = 0, customer: str = "c1", at: datetime = T0) -> Payment:
    return Payment(
        transaction_id=f"tx{i}",
        customer_id=customer,
        terminal_id="t9",
        amount=Decimal("12.50"),
        currency="EUR",
        event_time=at,
    )


# -- pacing --------------------------------------------------------------------------------


def test_schedule_spreads_evenly():
    times = [prod.slot_time(100.0, i, rate=50) for i in range(101)]
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.02}
    assert times[-1] == pytest.approx(102.0)  # 100 intervals of 1/50 s


def test_schedule_rate_zero_is_immediate():
    assert prod.slot_time(5.0, 1000, rate=0) == 5.0


class _FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_sleeps_to_each_slot_not_in_bursts():
    clock = _FakeClock()
    pacer = prod.Pacer(10, clock=clock, sleep=clock.sleep)
    sent_at = []
    for _ in range(5):
        pacer.wait()
        sent_at.append(clock.now)
    assert sent_at == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_pacer_catches_up_small_stall_but_reanchors_after_long_one():
    clock = _FakeClock()
    pacer = prod.Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()  # slot 0 at t=0
    clock.now = 0.35  # a short stall: slots 1..3 are due, sent without sleeping
    for _ in range(3):
        pacer.wait()
    assert clock.now == pytest.approx(0.35) and not clock.sleeps
    clock.now = 10.0  # a long stall: no burst of 95 messages, the schedule restarts
    pacer.wait()
    pacer.wait()
    assert clock.now == pytest.approx(10.1)


def test_pacer_rate_zero_never_sleeps():
    clock = _FakeClock()
    pacer = prod.Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.wait()
    assert clock.sleeps == []


# -- fault injection -----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.333, 1.0])
def test_selection_yields_requested_fraction(rate):
    n = 10_000
    chosen = sum(prod.is_selected(i, rate, phase=0.37) for i in range(n))
    assert abs(chosen - rate * n) <= 1


def test_injector_fraction_kinds_and_determinism():
    def run(seed):
        injector = prod.FaultInjector(0.1, 0.0, seed)
        return [injector.corrupt(i, _payment(i)) for i in range(2000)]

    first = run(7)
    bad = [b for b in first if b is not None]
    assert 199 <= len(bad) <= 201
    assert set(Counter(kind for kind, _ in bad)) == set(prod.BAD_KINDS)
    assert run(7) == first and run(8) != first


@pytest.mark.parametrize("kind", prod.BAD_KINDS)
def test_every_bad_kind_fails_parse(kind):
    raw = prod.make_bad_message(_payment(), kind)
    assert isinstance(parse_payment(raw), InvalidMessage)


def test_bad_kinds_map_to_parser_kinds():
    kinds = {k: parse_payment(prod.make_bad_message(_payment(), k)).kind for k in prod.BAD_KINDS}
    assert kinds["invalid_json"] == "json"
    assert kinds["non_utf8"] == "encoding"
    assert kinds["missing_field"] == kinds["negative_amount"] == "schema"
    assert kinds["naive_timestamp"] == "schema"


def test_duplicates_come_from_recent_payments():
    injector = prod.FaultInjector(0.0, 0.5, seed=1)
    recent = deque([_payment(i) for i in range(3)])
    picks = [injector.duplicate(i, recent) for i in range(100)]
    assert sum(p is not None for p in picks) == 50
    assert {p.transaction_id for p in picks if p} <= {"tx0", "tx1", "tx2"}
    assert injector.duplicate(0, deque()) is None


def test_injector_rejects_out_of_range_rates():
    with pytest.raises(ValueError, match="bad_rate"):
        prod.FaultInjector(1.5, 0.0, 0)


# -- file sources --------------------------------------------------------------------------


def test_csv_source(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(
        "transaction_id,customer_id,terminal_id,amount,currency,event_time,country,is_fraud\n"
        "a1,c1,t1,10.00,EUR,2018-08-01T10:00:00+00:00,FR,1\n"
        "a2,c2,t1,3.5,USD,2018-08-01T12:00:00+02:00,,0\n",
        encoding="utf-8",
    )
    items = list(sources.read_payments_file(path))
    assert [i.payment.transaction_id for i in items] == ["a1", "a2"]
    assert [i.is_fraud for i in items] == [True, False]
    assert items[0].payment.country == "FR" and items[1].payment.country is None
    assert items[1].payment.event_time == datetime(2018, 8, 1, 10, tzinfo=timezone.utc)


def test_jsonl_source_round_trips_canonical_messages(tmp_path):
    payments = [_payment(i, at=T0 + timedelta(minutes=i)) for i in range(3)]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(payment_to_json(p) for p in payments) + b"\n\n")
    items = list(sources.read_payments_file(path))
    assert [i.payment for i in items] == payments
    assert all(i.is_fraud is None for i in items)


def test_jsonl_detected_without_suffix(tmp_path):
    path = tmp_path / "payments.txt"
    path.write_bytes(payment_to_json(_payment()) + b"\n")
    assert len(list(sources.read_payments_file(path))) == 1


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.csv", b"a,b\n1,2\n", r"lacks column\(s\) transaction_id"),
        ("bad.csv", b"\xff\xfe", r"UTF-16"),
        ("bad.csv", b"transaction_id,caf\xe9\n", r"line 1 is not UTF-8"),
    ],
)
def test_unreadable_files_are_input_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        list(sources.read_payments_file(path))


def test_bad_rows_are_skipped_and_listed_not_fatal(tmp_path):
    good = payment_to_json(_payment(1)).decode()
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(["{not json}", "[1, 2]", json.dumps({"transaction_id": "x"}), good, good]) + "\n"
    )
    source = sources.read_payments_file(path)
    assert [i.payment.transaction_id for i in source] == ["tx1"]
    assert [(r.line, r.kind, r.field) for r in source.rejected] == [
        (1, "json", None),
        (2, "json", None),
        (3, "schema", "customer_id"),
        (5, "duplicate", "transaction_id"),
    ]


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(sources.read_payments_file(tmp_path / "nope.csv"))


# -- simulated source and labels -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_world():
    from payscore.core.simulator import generate_world

    return generate_world(n_customers=30, n_terminals=200, n_days=20)


def test_simulated_source_starts_at_start_and_loops(small_world):
    start = datetime(2018, 4, 15, tzinfo=timezone.utc)
    source = sources.simulated_source(start, loop=True, world=small_world)
    n = int((small_world["TX_DATETIME"] >= "2018-04-15").sum())
    first_lap = [next(source) for _ in range(n)]
    second = next(source)
    assert first_lap[0].payment.event_time >= start
    times = [i.payment.event_time for i in first_lap]
    assert times == sorted(times)
    assert second.payment.transaction_id == "L1-" + first_lap[0].payment.transaction_id
    assert second.payment.event_time > first_lap[-1].payment.event_time
    assert all(isinstance(i.is_fraud, bool) for i in first_lap)


def test_simulated_source_after_the_world_is_input_error(small_world):
    with pytest.raises(InputError, match="no payments"):
        next(sources.simulated_source(datetime(2030, 1, 1, tzinfo=timezone.utc), world=small_world))


def test_label_message_format():
    body = json.loads(prod.label_message("tx1", True, T0))
    assert body == {"transaction_id": "tx1", "is_fraud": True, "known_at": T0.isoformat()}


class _Future:
    def add_errback(self, fn):
        return self

    def add_callback(self, fn, *args):
        return self


class _Recorder:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))
        return _Future()

    def flush(self, timeout=None):
        pass


def test_produce_counts_keys_and_delays_labels(monkeypatch):
    monkeypatch.setattr(prod, "ensure_topics", lambda *a, **k: [])
    from payscore.config import Settings

    items = [
        sources.SourceItem(_payment(i, customer=f"c{i % 3}", at=T0 + timedelta(days=i)), i == 1)
        for i in range(12)
    ]
    recorder = _Recorder()
    options = prod.ProduceOptions(topic="in", rate=0, labels=True, labels_topic="lab")
    stats = prod.produce(Settings(), items, options, producer=recorder)
    payments = [s for s in recorder.sent if s[0] == "in"]
    labels = [s for s in recorder.sent if s[0] == "lab"]
    assert stats.sent == stats.payments == 12 and stats.labels == 1
    assert all(key == json.loads(value)["customer_id"].encode() for _, key, value in payments)
    # tx1 happened on day 1; its label is due on day 8, so it goes out just before tx8.
    assert json.loads(labels[0][2])["transaction_id"] == "tx1"
    order = [
        json.loads(v).get("transaction_id") + ("/label" if t == "lab" else "")
        for t, _, v in recorder.sent
    ]
    assert order.index("tx1/label") == order.index("tx8") - 1


def test_produce_count_bad_and_duplicates(monkeypatch):
    monkeypatch.setattr(prod, "ensure_topics", lambda *a, **k: [])
    from payscore.config import Settings

    items = (sources.SourceItem(_payment(i, at=T0 + timedelta(seconds=i))) for i in range(10_000))
    recorder = _Recorder()
    options = prod.ProduceOptions(
        topic="in", rate=0, count=1000, bad_rate=0.1, duplicate_rate=0.05, seed=3
    )
    stats = prod.produce(Settings(), items, options, producer=recorder)
    assert (stats.payments, stats.bad, stats.duplicates) == (900, 100, 50)
    assert stats.sent == len(recorder.sent) == 1050
    failing = sum(isinstance(parse_payment(v), InvalidMessage) for _, _, v in recorder.sent)
    assert failing == 100
