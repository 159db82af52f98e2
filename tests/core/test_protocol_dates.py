"""Training by dates: periods derived or given, their errors, and which rows each period uses."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pytest

from payscore.core import protocol, simulator, training
from payscore.core.features import DAY
from payscore.core.protocol_dates import (
    Periods,
    day_date,
    day_number,
    parse_date,
    resolve_periods,
    select,
    warm_up_days,
)
from payscore.errors import InputError

NONE: dict[str, date | None] = {}


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_defaults_from_the_data_are_named_as_derived() -> None:
    p = resolve_periods(ts("2020-01-01T10:00"), ts("2020-04-30T20:00"), NONE)
    assert p.dates("test") == ["2020-04-24", "2020-04-30"]
    assert p.dates("validation") == ["2020-04-17", "2020-04-23"]  # the label-delay gap
    assert p.dates("train") == ["2020-03-06", "2020-04-16"]  # six weeks
    assert set(p.derived) == {
        "train_start",
        "train_end",
        "validation_start",
        "validation_end",
        "test_start",
        "test_end",
    }
    assert p.label_cutoff == ts("2020-04-24T00:00")


def test_given_bounds_are_kept_and_the_rest_derived_around_them() -> None:
    given = {"test_start": date(2020, 3, 1), "train_start": date(2020, 2, 10)}
    p = resolve_periods(ts("2020-01-01T00:00"), ts("2020-04-30T00:00"), given)
    assert p.dates("test") == ["2020-03-01", "2020-03-07"]
    assert p.dates("train") == ["2020-02-10", "2020-02-22"]
    assert "test_start" not in p.derived and "train_start" not in p.derived
    assert "test_end" in p.derived and "train_end" in p.derived


def test_training_inside_the_warm_up_starts_after_it_with_a_note() -> None:
    first = ts("2020-01-01T06:00")
    p = resolve_periods(first, ts("2020-04-30T00:00"), {"train_start": date(2020, 1, 5)})
    assert p.warm_up_end == first + warm_up_days(7) * DAY == ts("2020-02-07T06:00")
    assert any("warm-up" in n for n in p.notes)


def test_a_short_file_gets_a_shorter_warm_up_and_says_so() -> None:
    p = resolve_periods(ts("2020-01-01T00:00"), ts("2020-01-30T12:00"), NONE)
    assert p.warm_up_end == ts("2020-01-09T00:00")  # (30 - 7 test - 7 gap) // 2 days
    assert any("warm-up shortened to 8 days" in n for n in p.notes)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"train_start": date(2020, 3, 10), "train_end": date(2020, 3, 1)}, "--train-start"),
        (
            {"train_end": date(2020, 4, 1), "validation_start": date(2020, 3, 30)},
            "the train and validation periods overlap",
        ),
        (
            {"train_end": date(2020, 4, 20), "test_start": date(2020, 4, 24)},
            "leave at least the 7-day label delay",
        ),
        ({"test_start": date(2021, 1, 1), "test_end": date(2021, 1, 7)}, "outside the data"),
        ({"train_end": date(2020, 1, 20)}, "before the feature warm-up is over"),
    ],
)
def test_bad_periods_are_one_clear_error(given: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        resolve_periods(ts("2020-01-01T00:00"), ts("2020-04-30T00:00"), given)
    assert "\n" not in str(e.value)


def test_a_bad_date_names_its_flag() -> None:
    with pytest.raises(InputError, match=r"--test-end: '2020-02-30' is not a date"):
        parse_date("--test-end", "2020-02-30")
    assert day_date(day_number(date(2018, 8, 8))) == date(2018, 8, 8)


def _periods(**days: tuple[int, int]) -> Periods:
    return Periods(days["train"], days.get("validation"), days["test"], 0.0, 7)


def test_training_learns_only_labels_known_when_the_test_period_starts() -> None:
    # Days 100..101 train, test from 110: a label known on day 110 or later is not learned.
    times = np.array([100.5, 101.5, 101.6, 105.0, 110.5]) * DAY
    labels = np.array([1, 0, 1, -1, 1])
    known_at = np.array([101.0, 108.0, 110.0, np.nan, 111.0]) * DAY
    customers = np.array(["a", "b", "c", "d", "e"], dtype=object)
    sel = select(
        _periods(train=(100, 101), validation=(102, 109), test=(110, 116)),
        times,
        labels,
        known_at,
        customers,
    )
    assert sel.train.tolist() == [True, True, False, False, False]
    assert sel.validation.tolist() == [False, False, False, True, False]  # unlabelled too
    assert sel.test.tolist() == [False, False, False, False, True]


def test_warm_up_rows_are_never_fitted_or_tested() -> None:
    times = np.array([100.5, 101.5, 110.5]) * DAY
    p = Periods((100, 101), None, (110, 110), 101.0 * DAY, 7)
    sel = select(p, times, np.array([1, 0, 1]), times + 7 * DAY, np.array(["a", "b", "c"]))
    assert sel.train.tolist() == [False, True, False]


def test_known_card_filter_is_the_handbooks_on_its_world() -> None:
    world = simulator.load_world()
    history = training.History.from_world(world, end_day=protocol.TEST_END_DAY)
    start = simulator.START.date()
    periods = resolve_periods(
        float(history.times[0]),
        float(history.times[-1]),
        training.handbook_periods(),
    )
    customers = np.asarray(history.customer_ids, dtype=object)
    sel = select(periods, history.times, history.labels, history.label_known_at(7), customers)
    days = history.days - day_number(start)
    expected = protocol.handbook_test_mask(days, customers, history.labels)
    assert sel.test.sum() == 58_264  # docs/model.md: the handbook's test payments
    assert np.array_equal(sel.test, expected)


def test_a_replay_from_the_periods_start_gives_the_full_replays_features() -> None:
    # Long enough that the replay skips the first weeks: it reaches back the warm-up and a
    # card's 30 days more (a terminal keeps its old frauds' amount ratios).
    df = simulator.generate_world(n_customers=120, n_terminals=200, n_days=130)
    history = training.History.from_world(df)
    periods = resolve_periods(float(history.times[0]), float(history.times[-1]), NONE)
    engine, full = training.compute_features(history)
    since, until = periods.replay_from(), periods.kept()[1]
    assert since > history.times[0]  # the shortened replay really skips payments
    part = history.times >= since
    tail = training.History(
        [t for t, k in zip(history.transaction_ids, part, strict=True) if k],
        [c for c, k in zip(history.customer_ids, part, strict=True) if k],
        [t for t, k in zip(history.terminal_ids, part, strict=True) if k],
        history.amounts[part],
        history.times[part],
        history.labels[part],
    )
    rows = training.replay([tail], periods.kept(), chunk=777)
    kept = (history.times >= periods.kept()[0]) & (history.times < until)
    assert len(rows.X) == kept.sum() > 0
    assert np.array_equal(rows.X, full[kept], equal_nan=True)
    # The kept rows read old frauds' ratios, some of them from cards seen before the warm-up.
    assert (full[kept][:, engine.feature_names.index("terminal_last_fraud_ratio")] >= 0).any()


def test_a_replay_of_stored_payments_reads_their_stored_ratios() -> None:
    """Stored traffic carries each payment's amount ratio as its consumer computed it: the
    replay for training gives terminals that one (as the live consumers read it), and
    computes it only where none was stored (NaN)."""
    from dataclasses import replace

    df = simulator.generate_world(n_customers=120, n_terminals=200, n_days=70)
    history = training.History.from_world(df)
    keep = (history.times[0] + 40 * DAY, history.times[-1] + 1)
    computed = training.replay([history], keep)
    at = computed.engine.feature_names.index("terminal_last_fraud_ratio")
    ratios = np.full(len(history.times), 7.25)
    ratios[::2] = np.nan  # half stored without one
    stored = training.replay([replace(history, ratios=ratios)], keep)
    assert stored.X.shape == computed.X.shape
    others = [i for i in range(stored.X.shape[1]) if i != at]
    assert np.array_equal(stored.X[:, others], computed.X[:, others])
    read = stored.X[:, at]
    assert (read == 7.25).any()  # stored ratios read back
    kept_own = (read >= 0) & (read != 7.25)  # computed where none was stored: as without
    assert kept_own.any()
    assert set(read[kept_own]) <= set(computed.X[:, at])
