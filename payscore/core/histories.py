"""A customer's and a terminal's recent payments, as the feature engine holds them.

Each history is a few parallel lists, oldest payment first. A restored state leaves each
history in the snapshot's columns until something reads it (``restored``): the restore then
makes one small object per customer and terminal instead of seven lists per payment's key (at
5M payments, 35M list entries and 25M Python floats: about half of a restore's time), and a
history that no payment touches before it ages out is never built at all. Reading any of its
lists builds them all, equal to the lists an eager restore makes. Trimming and counting
(``trim_restored``, ``held``) work on the columns, so the engine's periodic expiry and its size
do not build every history at once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

# The columns a restored history reads from (numpy arrays or lists, in FIELDS order; the
# first is the event times), and its slice of them.
Source = tuple[tuple[Sequence[Any], ...], int, int]
H = TypeVar("H", bound="_Restorable")


class _Restorable:
    __slots__ = ()
    FIELDS: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        # Reached only for a list that is not set: a restored history nothing has read yet.
        try:
            columns, at, end = object.__getattribute__(self, "_source")
        except AttributeError:
            raise AttributeError(name) from None
        object.__delattr__(self, "_source")
        for field, column in zip(self.FIELDS, columns, strict=True):
            part = column[at:end]
            object.__setattr__(self, field, part.tolist() if isinstance(part, np.ndarray) else part)
        return object.__getattribute__(self, name)


class CustomerHistory(_Restorable):
    __slots__ = ("times", "amounts", "_source")
    FIELDS = ("times", "amounts")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.amounts: list[float] = []


class TerminalHistory(_Restorable):
    __slots__ = ("times", "txids", "customers", "amounts", "fraud_at", "ratios", "_source")
    FIELDS = ("times", "txids", "customers", "amounts", "fraud_at", "ratios")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.txids: list[str] = []
        self.customers: list[str] = []
        self.amounts: list[float] = []
        # When the payment became known to be fraud (epoch seconds); inf = not known fraud.
        self.fraud_at: list[float] = []
        # The payment's amount over its card's 30-day median when it was decided
        # (``customer_amount_ratio_median_30day``; 1.0 without history), as its own consumer
        # computed it: another consumer's payment comes with the stored one.
        self.ratios: list[float] = []


def restored(cls: type[H], columns: tuple[Sequence[Any], ...], at: int, end: int) -> H:
    """A history of ``cls`` whose lists are ``column[at:end]`` of each column, built on first
    read. The columns must not change while any history reads from them."""
    history = cls.__new__(cls)
    object.__setattr__(history, "_source", (columns, at, end))
    return history


def restored_each(
    cls: type[H], keys: Sequence[str], counts: Sequence[int], columns: tuple[Sequence[Any], ...]
) -> Iterator[tuple[str, H]]:
    """(key, restored history) for histories laid out one after the other in ``columns``,
    ``counts[i]`` payments for ``keys[i]``."""
    at = 0
    for key, n in zip(keys, counts, strict=True):
        yield key, restored(cls, columns, at, at + n)
        at += n


def _source(history: _Restorable) -> Source | None:
    try:
        return object.__getattribute__(history, "_source")
    except AttributeError:
        return None


def is_built(history: _Restorable) -> bool:
    """Whether the history's lists exist (always, unless restored and not read since)."""
    return _source(history) is None


def held(history: CustomerHistory | TerminalHistory) -> int:
    """How many payments the history holds, without building it."""
    source = _source(history)
    return len(history.times) if source is None else source[2] - source[1]


def trim_restored(history: _Restorable, limit: float) -> bool | None:
    """For a history not built yet, drop its payments at or before ``limit`` (epoch seconds)
    without building it, and say whether none is left; None for a built history (the caller
    trims its lists)."""
    source = _source(history)
    if source is None:
        return None
    columns, at, end = source
    cut = bisect_right(columns[0], limit, at, end)
    if cut > at:
        object.__setattr__(history, "_source", (columns, cut, end))
    return cut >= end
