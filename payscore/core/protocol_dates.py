"""Training by dates: the train, validation and test periods, and which payments each uses.

Pure (numpy and pandas only). The rules, in docs/model.md "Training by dates":
- the first ``warm_up_days`` (the longest feature window plus the label delay) after the
  first payment are warm-up: replayed for state, never fitted or tested;
- the model learns only labels known when it would go live (``known_at`` before the test
  period starts), and the test period starts at least the label delay after training ends;
- the validation period only sets the thresholds (score quantiles, no labels needed);
- the test period drops cards already known compromised (the handbook's filter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from payscore.core.features import CUSTOMER_WINDOWS_DAYS, DAY, TERMINAL_WINDOWS_DAYS
from payscore.errors import InputError

#: Default length of the test period, and of the training period (six weeks, as the default
#: model's, chosen on validation: docs/model.md).
DEFAULT_TEST_DAYS = 7
DEFAULT_TRAIN_DAYS = 42
#: A test card is dropped when it had a fraud in this many days before the label gap, or
#: since then up to the day before its labels could be known (the handbook's filter).
KNOWN_CARD_LOOKBACK_DAYS = 7
FLAGS = {
    "train_start": "--train-start",
    "train_end": "--train-end",
    "validation_start": "--validation-start",
    "validation_end": "--validation-end",
    "test_start": "--test-start",
    "test_end": "--test-end",
}
_EPOCH = date(1970, 1, 1)


def warm_up_days(label_delay_days: int) -> int:
    """Days of history a payment needs for complete features: the longest customer or
    terminal window; a terminal's window ends ``label_delay_days`` before the payment."""
    return max(max(CUSTOMER_WINDOWS_DAYS), max(TERMINAL_WINDOWS_DAYS) + label_delay_days)


def replay_days(label_delay_days: int) -> int:
    """Days of history that decide a payment's features: the warm-up, and a card's 30 days
    more before the oldest payment a terminal reads, whose amount ratio (its amount over its
    card's 30-day median then) the terminal keeps (``TerminalHistory.ratios``)."""
    return warm_up_days(label_delay_days) + max(CUSTOMER_WINDOWS_DAYS)


def parse_date(flag: str, text: str) -> date:
    """A period bound given on the command line (YYYY-MM-DD), or one clear error."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{flag}: {text!r} is not a date (YYYY-MM-DD)") from None


def day_number(d: date) -> int:
    return (d - _EPOCH).days


def day_date(n: int) -> date:
    return _EPOCH + timedelta(days=int(n))


@dataclass(frozen=True)
class Periods:
    """Resolved periods as epoch day numbers, both ends inclusive; ``derived`` names the
    bounds that were derived from the data rather than given."""

    train: tuple[int, int]
    validation: tuple[int, int] | None
    test: tuple[int, int]
    warm_up_end: float  # epoch seconds: payments before it are warm-up
    label_delay_days: int
    derived: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def label_cutoff(self) -> float:
        """Epoch seconds: the model goes live when the test period starts; labels known
        later are not learned."""
        return self.test[0] * DAY

    def kept(self) -> tuple[float, float]:
        """Epoch seconds [from, until): the rows the periods and the known-card filter read."""
        lookback = self.test[0] - self.label_delay_days - KNOWN_CARD_LOOKBACK_DAYS
        return min(self.train[0], lookback) * DAY, (self.test[1] + 1) * DAY

    def replay_from(self) -> float:
        """Epoch seconds: a replay from here gives every kept row the features a replay of
        the whole history gives it (``replay_days``)."""
        return self.kept()[0] - replay_days(self.label_delay_days) * DAY

    def dates(self, name: str) -> list[str]:
        span = getattr(self, name)
        return [] if span is None else [day_date(d).isoformat() for d in span]

    def as_metadata(self) -> dict[str, object]:
        return {
            "train": self.dates("train"),
            "validation": self.dates("validation"),
            "test": self.dates("test"),
            "warm_up_until": datetime.fromtimestamp(self.warm_up_end, timezone.utc).isoformat(),
            "label_cutoff": day_date(self.test[0]).isoformat(),
            "derived": list(self.derived),
            "notes": list(self.notes),
        }


def resolve_periods(
    first_time: float,
    last_time: float,
    given: dict[str, date | None],
    *,
    label_delay_days: int = 7,
    default_train_days: int = DEFAULT_TRAIN_DAYS,
) -> Periods:
    """Fill in the bounds not ``given`` from the data's first and last event time, then
    check the periods; a bad combination is one ``InputError`` line."""
    first_day, last_day = int(first_time // DAY), int(last_time // DAY)
    warm = warm_up_days(label_delay_days)
    notes = []
    # Too short for a full warm-up and a week each of training and test: when the training
    # start is left to us, shorten the warm-up (and say so) rather than refuse a small file.
    short = last_day - first_day + 1 - DEFAULT_TEST_DAYS - label_delay_days
    if given.get("train_start") is None and short < warm + 7:
        warm = max(1, short // 2)
        notes.append(
            f"warm-up shortened to {warm} days: the data covers only "
            f"{last_day - first_day + 1} days, so the first fitted payments lack part of "
            f"their {warm_up_days(label_delay_days)}-day feature history"
        )
    warm_end = first_time + warm * DAY
    first_full_day = int(-(-warm_end // DAY))  # the first day wholly after warm-up
    day = {k: (None if v is None else day_number(v)) for k, v in given.items()}
    derived: list[str] = []

    def pick(name: str, value: int) -> int:
        if day.get(name) is None:
            day[name] = value
            derived.append(name)
        return int(day[name])  # type: ignore[arg-type]

    if day.get("test_end") is None and day.get("test_start") is not None:
        pick("test_end", min(int(day["test_start"]) + DEFAULT_TEST_DAYS - 1, last_day))  # type: ignore[arg-type]
    test_end = pick("test_end", last_day)
    test_start = pick("test_start", test_end - DEFAULT_TEST_DAYS + 1)
    if test_start > last_day or test_end < first_day or test_start < first_day:
        raise InputError(
            f"the test period {day_date(test_start)} .. {day_date(test_end)} is outside the "
            f"data ({day_date(first_day)} .. {day_date(last_day)})"
        )
    train_end = pick("train_end", test_start - label_delay_days - 1)
    train_start = pick("train_start", max(first_full_day, train_end - default_train_days + 1))
    validation: tuple[int, int] | None
    v_start, v_end = day.get("validation_start"), day.get("validation_end")
    if v_start is None and v_end is None and train_end + 1 > test_start - 1:
        validation = None
    else:
        validation = (
            pick("validation_start", train_end + 1),
            pick("validation_end", test_start - 1),
        )
    if train_end < first_full_day:
        raise InputError(
            f"the training period ends {day_date(train_end)}, before the feature warm-up is over "
            f"({warm} days from the first payment, until "
            f"{datetime.fromtimestamp(warm_end, timezone.utc):%Y-%m-%d %H:%M}); the data covers "
            f"{day_date(first_day)} .. {day_date(last_day)}"
        )
    _check(train_start, train_end, validation, test_start, test_end, label_delay_days)
    if train_start < first_full_day:
        notes.append(
            f"payments before {datetime.fromtimestamp(warm_end, timezone.utc):%Y-%m-%d %H:%M} "
            "are warm-up: replayed for state, not fitted"
        )
    return Periods(
        (train_start, train_end),
        validation,
        (test_start, test_end),
        warm_end,
        label_delay_days,
        tuple(derived),
        tuple(notes),
    )


def _check(
    train_start: int,
    train_end: int,
    validation: tuple[int, int] | None,
    test_start: int,
    test_end: int,
    delay: int,
) -> None:
    spans = [("train", train_start, train_end), ("test", test_start, test_end)]
    if validation is not None:
        spans.insert(1, ("validation", *validation))
    for name, lo, hi in spans:
        if lo > hi:
            raise InputError(
                f"{FLAGS[name + '_start']} {day_date(lo)} is after {FLAGS[name + '_end']} "
                f"{day_date(hi)}"
            )
    for (a, _, a_end), (b, b_start, _) in zip(spans, spans[1:], strict=False):
        if b_start <= a_end:
            raise InputError(
                f"the {a} and {b} periods overlap ({a} ends {day_date(a_end)}, {b} starts "
                f"{day_date(b_start)}); they must follow each other: train, validation, test"
            )
    gap = test_start - train_end - 1
    if gap < delay:
        raise InputError(
            f"the test period starts {gap} days after training ends ({day_date(train_end)} .. "
            f"{day_date(test_start)}); leave at least the {delay}-day label delay between them"
        )


@dataclass(frozen=True)
class Selection:
    """Which rows train the model, set its thresholds and test it (boolean masks)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    days: np.ndarray  # epoch day of each row, for Card Precision@100's per-day ranking


def select(
    periods: Periods,
    times: np.ndarray,
    labels: np.ndarray,
    known_at: np.ndarray,
    customers: np.ndarray,
) -> Selection:
    """The rows of each period: warm-up rows never; training rows need a label known at the
    cutoff; validation takes every payment (scores only); test the labelled ones minus cards
    already known compromised."""
    days = np.floor(times / DAY).astype(np.int64)
    ready = times >= periods.warm_up_end
    labelled = labels >= 0

    def within(span: tuple[int, int] | None) -> np.ndarray:
        if span is None:
            return np.zeros(len(days), dtype=bool)
        return (days >= span[0]) & (days <= span[1]) & ready

    train = within(periods.train) & labelled & (known_at < periods.label_cutoff)
    test = within(periods.test) & labelled
    test &= ~known_compromised(days, customers, labels, test, periods)
    return Selection(train, within(periods.validation), test, days)


def known_compromised(
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    periods: Periods,
) -> np.ndarray:
    """Among ``rows`` (test rows), those whose card had a fraud that counts as known on
    their day: on a day from ``KNOWN_CARD_LOOKBACK_DAYS`` before the label gap up to
    ``label_delay_days + 1`` days before. Handbook ch. 3 (``protocol.handbook_test_mask``)."""
    delay = periods.label_delay_days
    since = periods.test[0] - delay - KNOWN_CARD_LOOKBACK_DAYS
    fraud = (labels == 1) & (days >= since) & (days <= periods.test[1] - delay - 1)
    first = pd.Series(days[fraud]).groupby(np.asarray(customers)[fraud]).min()
    out = np.zeros(len(days), dtype=bool)
    idx = np.flatnonzero(rows)
    if len(idx) and len(first):
        seen = pd.Series(np.asarray(customers)[idx]).map(first).to_numpy(dtype=np.float64)
        out[idx] = seen <= days[idx] - delay - 1  # NaN (no fraud) compares False
    return out
