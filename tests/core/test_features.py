"""FeatureEngine: window edges, label cut-off, state handling, and one code path."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest

from payscore.core import histories, protocol, simulator, training
from payscore.core.features import FeatureEngine, Label
from payscore.core.schema import Payment

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc)  # a Monday, noon UTC


def pay(tx: str, when: datetime, amount: str = "10.00", cust: str = "c1", term: str = "t1"):
    return Payment(
        transaction_id=tx,
        customer_id=cust,
        terminal_id=term,
        amount=Decimal(amount),
        currency="EUR",
        event_time=when,
    )


def col(engine: FeatureEngine, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, engine.feature_names.index(name)]


def test_feature_names_cover_the_contract():
    engine = FeatureEngine(velocity_windows=(60, 3600))
    names = set(engine.feature_names)
    assert len(names) == len(engine.feature_names)
    for required in protocol.HANDBOOK_FEATURES:
        assert required in names
    assert {"customer_nb_tx_60s", "customer_nb_tx_3600s"} <= names


def test_customer_windows_include_current_and_exclude_the_left_edge():
    engine = FeatureEngine()
    payments = [
        pay("a", T0, "10.00"),
        pay("b", T0 + timedelta(days=1), "30.00"),  # exactly one day later: "a" drops out
        pay("c", T0 + timedelta(days=1, seconds=1), "20.00"),
    ]
    X = engine.transform(payments)
    assert col(engine, X, "customer_nb_tx_1day").tolist() == [1, 1, 2]
    assert col(engine, X, "customer_avg_amount_1day").tolist() == [10, 30, 25]
    assert col(engine, X, "customer_nb_tx_7day").tolist() == [1, 2, 3]
    assert col(engine, X, "customer_avg_amount_7day").tolist() == [10, 20, 20]


def test_velocity_window_edges():
    engine = FeatureEngine(velocity_windows=(60,))
    payments = [
        pay("a", T0),
        pay("b", T0 + timedelta(seconds=59)),
        pay("c", T0 + timedelta(seconds=60)),  # "a" is exactly 60 s old: outside (t-60, t]
    ]
    X = engine.transform(payments)
    assert col(engine, X, "customer_nb_tx_60s").tolist() == [1, 2, 2]


def test_weekend_and_night_flags():
    engine = FeatureEngine()
    saturday_night = datetime(2024, 3, 9, 6, 59, tzinfo=timezone.utc)
    monday_morning = datetime(2024, 3, 11, 7, 0, tzinfo=timezone.utc)
    X = engine.transform([pay("a", saturday_night), pay("b", monday_morning, cust="c2")])
    assert col(engine, X, "is_weekend").tolist() == [1, 0]
    assert col(engine, X, "is_night").tolist() == [1, 0]


def test_terminal_windows_are_delayed_and_use_only_known_labels():
    engine = FeatureEngine(label_delay_days=7)
    first = T0
    engine.transform([pay("old", first, cust="x")])
    # The label becomes known one hour after the delayed window would include the payment.
    known_at = first + timedelta(days=7, hours=1)
    engine.add_labels([Label("old", True, known_at)])
    probe_before = pay("p1", first + timedelta(days=7, minutes=30), cust="y")
    probe_after = pay("p2", first + timedelta(days=7, hours=2), cust="z")
    X = engine.transform([probe_before, probe_after])
    assert col(engine, X, "terminal_nb_tx_1day").tolist() == [1, 1]
    assert col(engine, X, "terminal_risk_1day").tolist() == [0.0, 1.0]
    assert col(engine, X, "terminal_nb_fraud_30day").tolist() == [0, 1]


def test_terminal_window_edges():
    engine = FeatureEngine(label_delay_days=7)
    engine.transform([pay("a", T0)])
    exactly_delay = pay("b", T0 + timedelta(days=7), cust="c2")  # t - d == time of "a": in
    just_before = pay("c", T0 + timedelta(days=7) - timedelta(seconds=1), cust="c3")
    past_window = pay("d", T0 + timedelta(days=8), cust="c4")  # (t-8d, t-7d]: "a" is out
    X = engine.transform([just_before, exactly_delay, past_window])
    assert col(engine, X, "terminal_nb_tx_1day").tolist() == [0, 1, 0]
    assert col(engine, X, "terminal_nb_tx_7day").tolist() == [0, 1, 1]


def test_label_received_before_its_payment_waits_for_it():
    engine = FeatureEngine(label_delay_days=0)
    engine.add_labels([Label("a", True, T0)])
    engine.transform([pay("a", T0)])
    X = engine.transform([pay("b", T0 + timedelta(seconds=1), cust="c2")])
    assert col(engine, X, "terminal_risk_1day").tolist() == [1.0]


def _world_slice(n: int):
    df = simulator.load_world()
    return df.iloc[:n]


@pytest.fixture(scope="module")
def world_payments():
    # Days 40..48 (about 86k payments): long enough for the delayed terminal windows to fill.
    df = simulator.load_world()
    days = df["TX_TIME_DAYS"].to_numpy()
    lo, hi = np.searchsorted(days, [40, 49])
    return df.iloc[lo:hi].reset_index(drop=True)


def test_one_code_path_payments_vs_columns_on_simulated_data(world_payments):
    """The consumer's Payment path and training's column path agree on every feature."""
    df = world_payments
    history = training.History.from_world(df)
    _, offline = training.compute_features(history, chunk=7_000)

    online_engine = FeatureEngine()
    payments = simulator.to_payments(df)
    delay = timedelta(days=protocol.LABEL_DELAY_DAYS)
    rows = []
    for start in range(0, len(payments), 500):
        batch = payments[start : start + 500]
        online_engine.add_labels(
            Label(p.transaction_id, bool(f), p.event_time + delay)
            for p, f in zip(batch, df["TX_FRAUD"].iloc[start : start + 500], strict=True)
        )
        rows.append(online_engine.transform(batch))
    online = np.vstack(rows)
    assert online.shape == offline.shape
    np.testing.assert_array_equal(online, offline)
    # Sanity: the slice exercises the label features.
    assert col(online_engine, online, "terminal_risk_30day").max() > 0


def test_batch_equals_one_by_one(world_payments):
    payments = simulator.to_payments(world_payments.iloc[:3000])
    batched = FeatureEngine().transform(payments)
    single_engine = FeatureEngine()
    single = np.vstack([single_engine.transform([p]) for p in payments])
    np.testing.assert_array_equal(batched, single)
    # The consumer's per-payment call: same rows, same state afterwards.
    one_engine = FeatureEngine()
    one = np.array([one_engine.transform_one(p) for p in payments])
    np.testing.assert_array_equal(batched, one)
    assert one_engine.snapshot() == single_engine.snapshot()


def test_snapshot_restore_continues_identically(world_payments):
    payments = simulator.to_payments(world_payments.iloc[:6000])
    engine = FeatureEngine()
    engine.transform(payments[:3000])
    engine.add_labels([Label(payments[0].transaction_id, True, payments[2000].event_time)])
    engine.add_labels([Label("not-seen-yet", True, T0)])
    snap = json.loads(json.dumps(engine.snapshot()))  # must survive JSON
    restored = FeatureEngine.restore(snap)
    assert restored.feature_names == engine.feature_names
    np.testing.assert_array_equal(
        engine.transform(payments[3000:]), restored.transform(payments[3000:])
    )


def _internals(engine: FeatureEngine) -> tuple:
    """Everything the engine holds, dicts in their order."""
    return (
        [(k, c.times, c.amounts) for k, c in engine._customers.items()],
        [
            (k, t.times, t.txids, t.customers, t.amounts, t.fraud_at)
            for k, t in engine._terminals.items()
        ],
        _held(engine),
        list(engine._pending.items()),
        engine._newest,
    )


def _held(engine: FeatureEngine) -> list[tuple[str, str, int]]:
    """Each payment held, the terminal a late label finds it in and its place there."""
    keys = {id(term): k for k, term in engine._terminals.items()}
    every = {tx for term in engine._terminals.values() for tx in term.txids}
    found = [(tx, engine._locate(tx)) for tx in sorted(every | set(engine._tx_terminal))]
    return [(tx, keys[id(at[0])], at[1]) for tx, at in found if at is not None]


def test_columns_restore_the_very_state_and_continue_identically(world_payments):
    payments = simulator.to_payments(world_payments.iloc[:6000])
    engine = FeatureEngine(label_delay_days=3)
    engine.transform(payments[:3000])
    engine.transform([payments[10]])  # a duplicate transaction id: the index keeps the last
    engine.add_labels([Label(p.transaction_id, True, p.event_time) for p in payments[100:900:7]])
    engine.add_labels([Label(payments[101].transaction_id, False, payments[2500].event_time)])
    engine.add_labels([Label("not-seen-yet", True, T0), Label("later", False, T0)])
    engine.expire(payments[2999].event_time - timedelta(days=20))
    cols = engine.columns()
    as_arrays = {
        name: np.asarray(getattr(cols, name))
        for name in ("customer_counts", "customer_times", "terminal_amounts", "pending_known")
    }
    by_lists = FeatureEngine.restore(engine.snapshot())  # the element-by-element restore
    assert engine._tx_terminal == by_lists._tx_terminal  # in terminal order after a restore
    for restored in (
        FeatureEngine.from_columns(cols),
        FeatureEngine.from_columns(type(cols)(**{**cols.__dict__, **as_arrays})),
    ):
        assert _internals(restored) == _internals(by_lists)
        assert restored.snapshot() == engine.snapshot()
        assert restored.feature_names == engine.feature_names
        np.testing.assert_array_equal(
            FeatureEngine.restore(engine.snapshot()).transform(payments[3000:]),
            restored.transform(payments[3000:]),
        )
    empty = FeatureEngine.from_columns(FeatureEngine().columns())
    assert _internals(empty) == _internals(FeatureEngine())


def test_a_columns_restore_builds_each_history_on_first_read_and_expires_without_building(
    world_payments,
):
    payments = simulator.to_payments(world_payments.iloc[:6000])
    engine = FeatureEngine(label_delay_days=3)
    engine.transform(payments[:4000])
    engine.add_labels([Label(p.transaction_id, True, p.event_time) for p in payments[50:900:9]])
    cols = engine.columns()
    arrays = {
        name: np.asarray(getattr(cols, name))
        for name in ("customer_times", "customer_amounts", "terminal_times", "terminal_fraud_at")
    }
    restored = FeatureEngine.from_columns(type(cols)(**{**cols.__dict__, **arrays}))
    everyone = [*restored._customers.values(), *restored._terminals.values()]
    assert restored.held_entries == engine.held_entries  # its index in place of the dict
    assert not any(histories.is_built(h) for h in everyone)  # counted, not built
    oldest, newest = payments[0].event_time, payments[3999].event_time
    keeps = sorted({engine._customer_keep, engine._terminal_trim})
    # Horizons that cut a quarter and a half of each history kind's time span.
    for keep in keeps:
        for part in (0.25, 0.5):
            now = oldest + timedelta(seconds=keep) + part * (newest - oldest)
            before = restored.held_entries
            engine.expire(now)
            restored.expire(now)
            assert restored.held_entries < before  # payments were dropped ...
            assert restored.customer_count == engine.customer_count  # ... and whole histories
            assert restored.terminal_count == engine.terminal_count
            # The restored index keeps its entries (the dict drops them): compare the rest.
            index = len(restored._restored) if restored._restored is not None else 0
            assert restored.held_entries - index == engine.held_entries - len(engine._tx_terminal)
    kept = [*restored._customers.values(), *restored._terminals.values()]
    assert kept and not any(histories.is_built(h) for h in kept)  # trimmed in the columns
    first = next(iter(restored._terminals.values()))  # (the customers are all gone by now)
    assert isinstance(first.fraud_at, list) and histories.is_built(first)  # one read builds all
    assert all(type(x) is float for x in first.times)  # as an eager restore makes them
    assert _internals(restored)[:2] == _internals(engine)[:2]
    np.testing.assert_array_equal(
        engine.transform(payments[4000:]), restored.transform(payments[4000:])
    )


def test_late_labels_find_the_payments_of_a_columns_restore_until_they_age_out():
    engine = FeatureEngine(label_delay_days=1)
    days = range(5)
    engine.transform([pay(f"t{d}", T0 + timedelta(days=d), term=f"k{d % 2}") for d in days])
    engine.transform([pay("t1", T0 + timedelta(days=5), term="k0")])  # the same id again
    restored = FeatureEngine.from_columns(engine.columns())
    engine = FeatureEngine.restore(engine.snapshot())  # the reference: a dict of every payment
    assert restored._tx_terminal == {} and restored._restored is not None
    assert restored.held_entries == engine.held_entries + 1  # the repeated id, indexed twice
    assert all(restored.holds_payment(f"t{d}") for d in days)
    assert not restored.holds_payment("never-seen")
    labelled = T0 + timedelta(days=6)
    for e in (engine, restored):
        e.add_labels([Label("t1", True, labelled), Label("t2", True, labelled)])
        e.add_labels([Label("never-seen", True, labelled)])
    assert _internals(restored) == _internals(engine)
    # A repeated id: the last in terminal order (k1's) is labelled, as by the dict.
    assert restored._terminals["k1"].fraud_at[0] == labelled.timestamp()
    assert restored._terminals["k0"].fraud_at[-1] == math.inf
    # A payment trimmed from its terminal is no longer found; a label for it waits.
    probe = T0 + timedelta(days=1 + 37 + 1, hours=1)  # trims t0 and t1 from k1 (and k0's t0)
    for e in (engine, restored):
        e.transform([pay("p", probe, cust="c9", term="k1")])
        e.transform([pay("q", probe, cust="c9", term="k0")])
    assert not restored.holds_payment("t1")  # its last place (k1) trimmed; k0's not searched
    assert not restored.holds_payment("t0")
    restored.add_labels([Label("t0", True, probe)])
    engine.add_labels([Label("t0", True, probe)])
    assert "t0" in restored._pending and _internals(restored) == _internals(engine)
    # Once every restored payment has aged out, the index is dropped.
    restored.expire(T0 + timedelta(days=80))
    engine.expire(T0 + timedelta(days=80))
    assert restored._restored is None and restored.held_entries == engine.held_entries


def test_columns_that_do_not_add_up_are_refused():
    engine = FeatureEngine()
    engine.transform([pay("a", T0), pay("b", T0, cust="c2")])
    cols = engine.columns()
    for broken in (
        {"customer_counts": [1, 2]},
        {"terminal_counts": [1]},
        {"customer_keys": ["c1"]},
        {"pending_fraud": [True]},
    ):
        with pytest.raises(ValueError):
            FeatureEngine.from_columns(type(cols)(**{**cols.__dict__, **broken}))


def test_expire_drops_silent_customers_and_terminals():
    engine = FeatureEngine()
    engine.transform([pay("a", T0, cust="quiet", term="t-quiet")])
    engine.transform([pay("b", T0 + timedelta(days=40), cust="busy", term="t-busy")])
    assert engine.customer_count == 2
    # A terminal is kept a label delay longer than its 37-day windows reach (late payments).
    assert engine.expire(T0 + timedelta(days=40, hours=1)) == 1  # the quiet customer
    dropped = engine.expire(T0 + timedelta(days=44, hours=1))
    assert dropped == 1  # and now its terminal
    assert engine.customer_count == 1 and engine.terminal_count == 1
    X = engine.transform([pay("c", T0 + timedelta(days=45), cust="quiet", term="t-quiet")])
    assert col(engine, X, "customer_nb_tx_30day").tolist() == [1]


def test_forget_customers():
    engine = FeatureEngine()
    engine.transform([pay("a", T0, cust="keep-1"), pay("b", T0, cust="drop-1")])
    assert engine.forget_customers(lambda c: c.startswith("keep")) == 1
    assert engine.customer_count == 1


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        FeatureEngine(velocity_windows=(60, 60))
    with pytest.raises(ValueError):
        FeatureEngine(velocity_windows=(0,))


def test_recent_high_spend_of_the_card():
    engine = FeatureEngine()
    amounts = ["10.00", "12.00", "10.00", "60.00", "11.00"]
    payments = [pay(str(i), T0 + timedelta(days=i), a) for i, a in enumerate(amounts)]
    payments.append(pay("late", T0 + timedelta(days=10, hours=1), "11.00"))  # 60.00: 7 d old
    X = engine.transform(payments)
    # Largest earlier amount of the last 7 days over the median of the earlier 30 days.
    assert col(engine, X, "customer_max_ratio_7day").tolist() == pytest.approx(
        [0.0, 1.0, 12 / 11, 1.2, 60 / 11, 1.0]
    )
    # 60.00 is above 3x the median; it still counts after 7 days (14-day window).
    assert col(engine, X, "customer_nb_high_14day").tolist() == [0, 0, 0, 0, 1, 1]


def test_fraud_run_age_ignores_an_older_isolated_fraud():
    engine = FeatureEngine(label_delay_days=1)
    days = [0, 2, 4, 5]  # an isolated fraud on day 0, a genuine payment, then a run of frauds
    payments = [pay(f"t{d}", T0 + timedelta(days=d), cust=f"c{d}") for d in days]
    engine.transform(payments)
    engine.add_labels([Label(f"t{d}", d != 2, T0 + timedelta(days=d + 1)) for d in days])
    X = engine.transform([pay("probe", T0 + timedelta(days=6, hours=12), cust="x")])
    assert col(engine, X, "terminal_days_since_first_fraud").tolist() == [6.5]
    assert col(engine, X, "terminal_fraud_run_days").tolist() == [2.5]


def _habit_then_fraud() -> list[Payment]:
    """Card c1 pays 10.00 three days running at terminal "home", then 50.00 (5x its median)
    at terminal "t1"."""
    days = [pay(f"h{d}", T0 + timedelta(days=d), "10.00", term="home") for d in range(3)]
    return [*days, pay("fraud", T0 + timedelta(days=3), "50.00")]


def test_a_terminal_reads_its_last_known_frauds_ratio_to_its_cards_habit():
    engine = FeatureEngine(label_delay_days=1)
    X = engine.transform(_habit_then_fraud())
    assert col(engine, X, "customer_amount_ratio_median_30day")[-1] == 5.0
    probe = T0 + timedelta(days=4, hours=12)  # the fraud is a label delay old
    X = engine.transform([pay("p1", probe, cust="x")])
    assert col(engine, X, "terminal_last_fraud_ratio").tolist() == [-1.0]  # no label yet
    engine.add_labels([Label("fraud", True, T0 + timedelta(days=4))])
    X = engine.transform([pay("p2", probe, cust="y")])
    assert col(engine, X, "terminal_last_fraud_ratio").tolist() == [5.0]


def test_another_consumers_payment_keeps_the_ratio_its_own_consumer_stored():
    """A consumer that does not own card c1 learns its payment from the database without the
    card's history: given the stored ratio, its terminal reads what the owner's reads."""
    label = Label("fraud", True, T0 + timedelta(days=4))
    probe = pay("probe", T0 + timedelta(days=4, hours=12), cust="x")
    owner = FeatureEngine(label_delay_days=1)
    X = owner.transform(_habit_then_fraud())
    owner.add_labels([label])
    stored = float(col(owner, X, "customer_amount_ratio_median_30day")[-1])
    want = owner.transform_one(probe)

    def other(ratios):
        """The other consumer's engine: the fraud read from the database, then its label."""
        engine = FeatureEngine(label_delay_days=1)
        at = (T0 + timedelta(days=3)).timestamp()
        engine.transform_columns(["fraud"], ["c1"], ["t1"], [50.0], [at], ratios)
        engine.add_labels([label])
        return engine

    assert other([stored]).transform_one(probe) == want
    at = owner.feature_names.index("terminal_last_fraud_ratio")
    without = [other(r).transform_one(probe)[at] for r in (None, [None])]
    assert without == [1.0, 1.0]  # no history: computed, and wrong
    # The stored ratio survives a snapshot of the other consumer's state, both forms.
    engine = other([stored])
    for copy in (
        FeatureEngine.restore(engine.snapshot()),
        FeatureEngine.from_columns(engine.columns()),
    ):
        assert copy.transform_one(probe) == want


def test_the_engine_keeps_its_newest_event_time_across_a_snapshot():
    engine = FeatureEngine()
    assert engine.newest_event_time is None
    engine.transform([pay("b", T0 + timedelta(hours=2)), pay("a", T0, cust="c2", term="t2")])
    assert engine.newest_event_time == T0 + timedelta(hours=2)
    restored = FeatureEngine.restore(json.loads(json.dumps(engine.snapshot())))
    assert restored.newest_event_time == T0 + timedelta(hours=2)
    assert restored.held_entries == engine.held_entries == 6  # 2 + 2 lists, 2 terminal txids


def _partitioned_runs(payments, frauds, leads_days):
    """The payments as a consumer of ``len(leads_days)`` partitions (keyed by card) may read
    them: partition k running ``leads_days[k]`` days of event time ahead of an in-order read,
    each card in its own order; each payment's label sent with it, known 7 days later.
    Returns the engine, the arrival order and the features keyed by transaction."""
    delay = timedelta(days=protocol.LABEL_DELAY_DAYS)
    n = len(leads_days)
    lead = [d * 86_400.0 for d in leads_days]
    order = sorted(
        range(len(payments)),
        key=lambda i: payments[i].event_time.timestamp() - lead[int(payments[i].customer_id) % n],
    )
    engine = FeatureEngine()
    rows = {}
    for i in order:
        p = payments[i]
        engine.add_label(p.transaction_id, bool(frauds[i]), (p.event_time + delay).timestamp())
        rows[p.transaction_id] = engine.transform_one(p)
    return engine, order, rows


def test_terminal_features_do_not_depend_on_the_order_across_partitions():
    """A terminal's payments come through every partition in an order that differs from run to
    run and between consumers: up to days apart in a backlog. The features of every payment are
    the same whichever order, as long as no partition runs a label delay ahead of another."""
    df = simulator.generate_world(n_customers=300, n_terminals=100, n_days=70)
    payments = simulator.to_payments(df)
    frauds = df["TX_FRAUD"].to_numpy()
    engine, _, in_order = _partitioned_runs(payments, frauds, [0])
    for leads in ([0, 0.02, 1], [5.9, 0, 3, 0.5, 2]):
        _, order, rows = _partitioned_runs(payments, frauds, leads)
        assert order != sorted(order)  # the arrival order did change
        assert rows == in_order, leads
    # The slice reaches the trimmed edge of the 30-day delayed windows and their known frauds.
    X = np.array(list(in_order.values()))
    assert col(engine, X, "terminal_nb_fraud_30day").max() > 0
    assert (df["TX_TIME_DAYS"].max() - df["TX_TIME_DAYS"].min()) > 45
