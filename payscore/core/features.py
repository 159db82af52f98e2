"""Per-customer and per-terminal features, computed incrementally in event time.

One code path: the consumer calls ``FeatureEngine.transform`` on each batch, and training runs
the very same engine over the history (``transform_columns`` is the column-wise entry point
both use), so there is no training/serving skew. Fraud labels are a second input: a label is
used only by payments whose event time is at or after the label's ``known_at``.

A terminal's payments reach a consumer through every partition (the producer keys by card), in
an order that differs from run to run and between consumers. So terminal features read only
the terminal's payments at least the label delay old, and a terminal's history is trimmed with
the same delay of slack: a payment's terminal features do not depend on the order in which the
terminal's payments arrived, as long as no payment arrives a label delay (7 days) or more
behind another of the same terminal (docs/pipeline.md, "Terminal features and several
consumers").
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from operator import mul
from typing import Any

import numpy as np

from payscore.core.histories import CustomerHistory as _Customer
from payscore.core.histories import TerminalHistory as _Terminal
from payscore.core.histories import held, restored_each, trim_restored
from payscore.core.schema import Payment
from payscore.core.txindex import RestoredTxIndex

DAY = 86_400.0
CUSTOMER_WINDOWS_DAYS = (1, 7, 30)
TERMINAL_WINDOWS_DAYS = (1, 7, 30)
# Labels for payments not seen yet are held back, up to this many (oldest dropped first).
MAX_PENDING_LABELS = 2_000_000
SNAPSHOT_VERSION = 2
_INF = math.inf
_NO_HISTORY_SECONDS = 30 * DAY
# Window widths in seconds, computed once (the same floats as ``w * DAY`` inline).
_CUSTOMER_WINDOWS_S = tuple(w * DAY for w in CUSTOMER_WINDOWS_DAYS)
_TERMINAL_WINDOWS_S = tuple(w * DAY for w in TERMINAL_WINDOWS_DAYS)
_DAYS_7, _DAYS_14, _DAYS_30 = 7 * DAY, 14 * DAY, 30 * DAY
# A payment above this multiple of the card's 30-day median counts as unusually high spend.
HIGH_SPEND_RATIO = 3.0
# ``amount_whole``: the amount rounded down to whole units, capped here. Its 255 values are
# each a bin of a histogram tree model, where the amount's own bins (quantiles of the training
# sample) lump the top half-percent of amounts together, across any hard limit there.
AMOUNT_WHOLE_CAP = 254.0
# The feature a terminal keeps for each of its payments (``TerminalHistory.ratios``), and the
# decision stores (``scored_transactions.amount_ratio``).
RATIO_FEATURE = "customer_amount_ratio_median_30day"
# 1970-01-01 was a Thursday (weekday 3).
_EPOCH_WEEKDAY = 3


@dataclass
class StateColumns:
    """The engine's whole state as flat columns (``FeatureEngine.columns``), the form a
    snapshot stores: each customer's (terminal's) payments one after the other, in the order of
    ``customer_keys`` (``terminal_keys``), ``customer_counts`` (``terminal_counts``) of them
    each. Number columns are lists or numpy arrays. ``terminal_fraud_at`` is when the payment
    became known fraud (epoch seconds), inf if it is not; ``terminal_ratios`` the payment's
    amount over its card's 30-day median then; pending labels in arrival order."""

    velocity_windows: Sequence[int]
    label_delay_days: int
    customer_keys: list[str]
    customer_counts: Any
    customer_times: Any
    customer_amounts: Any
    terminal_keys: list[str]
    terminal_counts: Any
    terminal_times: Any
    terminal_txids: list[str]
    terminal_customers: list[str]
    terminal_amounts: Any
    terminal_fraud_at: Any
    terminal_ratios: Any
    pending_keys: list[str]
    pending_fraud: Any
    pending_known: Any


@dataclass(frozen=True)
class Label:
    """A fraud label for one transaction, usable from ``known_at`` (tz-aware UTC) on."""

    transaction_id: str
    is_fraud: bool
    known_at: datetime


def feature_names_for(velocity_windows: Sequence[int]) -> tuple[str, ...]:
    """The engine's column names, in order, for the given velocity windows (seconds)."""
    names = ["amount", "is_weekend", "is_night"]
    for w in CUSTOMER_WINDOWS_DAYS:
        names += [f"customer_nb_tx_{w}day", f"customer_avg_amount_{w}day"]
    names += [f"customer_nb_tx_{w}s" for w in velocity_windows]
    names += [
        "customer_amount_ratio_median_30day",
        "customer_amount_zscore_30day",
        "customer_amount_ratio_max_30day",
        "customer_seconds_since_last",
        "customer_max_ratio_7day",
        "customer_nb_high_14day",
    ]
    for w in TERMINAL_WINDOWS_DAYS:
        names += [f"terminal_nb_tx_{w}day", f"terminal_risk_{w}day"]
    names += [
        "terminal_nb_fraud_30day",
        "terminal_last_known_fraud",
        "terminal_days_since_first_fraud",
        "terminal_days_since_last_fraud",
        "terminal_nb_fraud_customers_30day",
        "terminal_last_fraud_amount",
        "terminal_fraud_run_days",
        "amount_whole",
        "terminal_last_fraud_ratio",
    ]
    return tuple(names)


class FeatureEngine:
    """Incremental per-customer and per-terminal state, windows in event time.

    Customer windows are ``(t - w, t]`` with the current payment included; terminal windows
    are ``(t - d - w, t - d]`` (d = label delay) with the fraction of known frauds, 0 if empty.
    No terminal feature reads the terminal's last d: payments of other cards come through other
    partitions and other consumers, in no fixed order (see the module docstring).
    """

    def __init__(self, velocity_windows: Sequence[int] = (60, 3600), label_delay_days: int = 7):
        windows = tuple(int(w) for w in velocity_windows)
        if any(w <= 0 for w in windows) or len(set(windows)) != len(windows):
            raise ValueError("velocity windows must be distinct positive numbers of seconds")
        if label_delay_days < 0:
            raise ValueError("label_delay_days must be >= 0")
        self.velocity_windows = windows
        self.label_delay_days = int(label_delay_days)
        self.feature_names: tuple[str, ...] = feature_names_for(windows)
        self._delay = self.label_delay_days * DAY
        self._customer_keep = max([max(CUSTOMER_WINDOWS_DAYS) * DAY, *map(float, windows)])
        self._terminal_keep = self._delay + max(TERMINAL_WINDOWS_DAYS) * DAY
        # A payment trims its terminal's history this far back: the windows' reach plus the
        # lateness allowed (the label delay), so a payment up to that late still finds the
        # history an in-order run gives it, whatever later payment trimmed first.
        self._terminal_trim = self._terminal_keep + self._delay
        self._customers: dict[str, _Customer] = {}
        self._terminals: dict[str, _Terminal] = {}
        self._tx_terminal: dict[str, str] = {}  # payments in terminal state, for late labels
        self._restored: RestoredTxIndex | None = None  # the same for a restored state's payments
        self._pending: dict[str, tuple[bool, float]] = {}  # labels of payments not seen yet
        self._newest = -_INF  # newest event time seen (epoch seconds): the engine's own clock

    # ----------------------------------------------------------------- transform

    def transform(self, payments: Sequence[Payment]) -> np.ndarray:
        """Feature rows (float64) for ``payments``, updating the state as it goes."""
        return self.transform_columns(
            [p.transaction_id for p in payments],
            [p.customer_id for p in payments],
            [p.terminal_id for p in payments],
            [float(p.amount) for p in payments],
            [p.event_time.timestamp() for p in payments],
        )

    def transform_one(self, payment: Payment) -> list[float]:
        """``transform`` of one payment, as a plain list (no array per call); same state update.

        The consumer computes features payment by payment, so that one bad payment costs only
        itself; building a numpy row per payment cost ~10% of that loop.
        """
        p = payment
        return self._row(
            p.transaction_id,
            p.customer_id,
            p.terminal_id,
            float(p.amount),
            p.event_time.timestamp(),
            None,
        )

    def transform_columns(
        self,
        transaction_ids: Sequence[str],
        customer_ids: Sequence[str],
        terminal_ids: Sequence[str],
        amounts: Sequence[float],
        times: Sequence[float],
        ratios: Sequence[float | None] | None = None,
    ) -> np.ndarray:
        """Column-wise ``transform``: epoch seconds and float amounts. Same code path.

        ``ratios``: for payments decided before (replayed from the database), each one's
        ``customer_amount_ratio_median_30day`` as it was when decided (None: not known). Its
        terminal keeps that one instead of the ratio this engine computes, which lacks the
        card's history for another consumer's payment (see ``TerminalHistory.ratios``).
        """
        n = len(transaction_ids)
        compute = self._row
        given = ratios if ratios is not None else [None] * n
        rows = [
            compute(
                transaction_ids[i],
                customer_ids[i],
                terminal_ids[i],
                float(amounts[i]),
                float(times[i]),
                given[i],
            )
            for i in range(n)
        ]
        if not rows:
            return np.empty((0, len(self.feature_names)), dtype=np.float64)
        return np.array(rows, dtype=np.float64)

    def _row(
        self, txid: str, cid: str, tid: str, amount: float, t: float, stored: float | None
    ) -> list[float]:
        # The consumer's hottest Python: locals instead of attribute lookups, window widths
        # computed once (same floats), list comprehensions instead of generator sums.
        if t > self._newest:
            self._newest = t
        day_index = t // DAY
        weekday = (int(day_index) + _EPOCH_WEEKDAY) % 7
        hour = (t - day_index * DAY) // 3600
        row = [amount, 1.0 if weekday >= 5 else 0.0, 1.0 if hour <= 6 else 0.0]
        append = row.append

        # --- customer: insert, trim, then windows ending at the current payment
        cust = self._customers.get(cid)
        if cust is None:
            cust = self._customers[cid] = _Customer()
        ctimes, camounts = cust.times, cust.amounts
        keep_from = t - self._customer_keep
        if ctimes and ctimes[0] <= keep_from:
            cut = bisect_right(ctimes, keep_from)
            del ctimes[:cut], camounts[:cut]
        if not ctimes or ctimes[-1] <= t:
            pos = len(ctimes)
            ctimes.append(t)
            camounts.append(amount)
        else:  # out of order for this customer: keep the lists sorted
            pos = bisect_right(ctimes, t)
            ctimes.insert(pos, t)
            camounts.insert(pos, amount)
        end = pos + 1
        for width in _CUSTOMER_WINDOWS_S:
            lo = bisect_right(ctimes, t - width, 0, end)
            count = end - lo
            append(float(count))
            append(sum(camounts[lo:end]) / count)
        for w in self.velocity_windows:
            append(float(end - bisect_right(ctimes, t - w, 0, end)))

        # --- customer amount relative to its own recent history (current excluded)
        lo30 = bisect_right(ctimes, t - _DAYS_30, 0, end)
        prior = camounts[lo30:pos]
        if prior:
            ordered = sorted(prior)
            m = len(ordered)
            median = ordered[m // 2] if m % 2 else (ordered[m // 2 - 1] + ordered[m // 2]) / 2
            mean = sum(prior) / m
            var = max(sum(map(mul, prior, prior)) / m - mean * mean, 0.0)
            ratio = amount / median if median > 0 else 1.0
            append(ratio)
            append((amount - mean) / (math.sqrt(var) + 1.0) if m >= 2 else 0.0)
            append(amount / ordered[-1] if ordered[-1] > 0 else 1.0)
            append(t - ctimes[pos - 1] if pos else _NO_HISTORY_SECONDS)
            # Has the card spent far above its habit lately? A compromised card keeps being
            # abused for days, and some of its later frauds have ordinary amounts.
            lo7 = bisect_right(ctimes, t - _DAYS_7, lo30, pos)
            if median > 0:
                append(max(camounts[lo7:pos], default=0.0) / median)
                high = HIGH_SPEND_RATIO * median
                lo14 = bisect_right(ctimes, t - _DAYS_14, lo30, pos)
                append(float(len([a for a in camounts[lo14:pos] if a > high])))
            else:
                row += (0.0, 0.0)
        else:
            ratio = 1.0
            row += (1.0, 0.0, 1.0, _NO_HISTORY_SECONDS, 0.0, 0.0)
        if stored is not None:
            ratio = stored

        # --- terminal: delayed windows with known-fraud fractions
        term = self._terminals.get(tid)
        if term is None:
            term = self._terminals[tid] = _Terminal()
        ttimes, fraud_at = term.times, term.fraud_at
        keep_from = t - self._terminal_trim
        if ttimes and ttimes[0] <= keep_from:
            cut = bisect_right(ttimes, keep_from)
            tx_terminal = self._tx_terminal
            for old in term.txids[:cut]:
                tx_terminal.pop(old, None)
            del ttimes[:cut], term.txids[:cut], fraud_at[:cut]
            del term.customers[:cut], term.amounts[:cut], term.ratios[:cut]
        base = t - self._delay
        hi = bisect_right(ttimes, base)
        lo, frauds = hi, 0
        for width in _TERMINAL_WINDOWS_S:  # increasing widths
            lo = bisect_right(ttimes, base - width, 0, hi)
            count = hi - lo
            window = fraud_at[lo:hi]
            # Most windows hold no fraud at all: one C-level count settles them.
            frauds = 0 if window.count(_INF) == count else len([k for k in window if k <= t])
            append(float(count))
            append(frauds / count if count else 0.0)
        append(float(frauds))
        # Is the terminal's fraud still going on? Latest known label, age of the fraud run.
        if frauds:
            known_fraud = [i for i in range(lo, hi) if fraud_at[i] <= t]
            append(1.0 if fraud_at[hi - 1] <= t else 0.0)
            append((t - ttimes[known_fraud[0]]) / DAY)
            append((t - ttimes[known_fraud[-1]]) / DAY)
            # Many defrauded cards point at the terminal; one card's big fraud does not.
            append(float(len({term.customers[i] for i in known_fraud})))
            append(term.amounts[known_fraud[-1]])
            # Age of the unbroken run of known frauds ending at the latest payment: a terminal
            # compromised now, whatever isolated fraud it saw weeks before (-1: no such run).
            start = hi
            while start > lo and fraud_at[start - 1] <= t:
                start -= 1
            append((t - ttimes[start]) / DAY if start < hi else -1.0)
            # What kind of fraud: in its card's habit (a terminal's), or far above it (a
            # card's). The ratio is the one its own consumer saw, however this one learnt it.
            last_ratio = term.ratios[known_fraud[-1]]
        else:
            row += (0.0, -1.0, -1.0, 0.0, 0.0, -1.0)
            last_ratio = -1.0

        # --- then record this payment at its terminal (with any label already received)
        label = self._pending.pop(txid, None) if self._pending else None
        known = label[1] if label is not None and label[0] else _INF
        if not ttimes or ttimes[-1] <= t:
            ttimes.append(t)
            term.txids.append(txid)
            term.customers.append(cid)
            term.amounts.append(amount)
            term.ratios.append(ratio)
            fraud_at.append(known)
        else:
            tpos = bisect_right(ttimes, t)
            ttimes.insert(tpos, t)
            term.txids.insert(tpos, txid)
            term.customers.insert(tpos, cid)
            term.amounts.insert(tpos, amount)
            term.ratios.insert(tpos, ratio)
            fraud_at.insert(tpos, known)
        self._tx_terminal[txid] = tid
        append(min(amount // 1.0, AMOUNT_WHOLE_CAP))
        append(last_ratio)
        return row

    # -------------------------------------------------------------------- labels

    def add_labels(self, labels: Iterable[Label]) -> None:
        """Record fraud labels; each is used only by payments at or after its ``known_at``."""
        for label in labels:
            self.add_label(label.transaction_id, label.is_fraud, label.known_at.timestamp())

    def add_label(self, transaction_id: str, is_fraud: bool, known_at: float) -> None:
        """Column form of ``add_labels``: ``known_at`` in epoch seconds. A later label wins."""
        held = self._locate(transaction_id)
        if held is not None:
            term, idx = held
            term.fraud_at[idx] = float(known_at) if is_fraud else _INF
            return
        pending = self._pending
        pending.pop(transaction_id, None)
        pending[transaction_id] = (bool(is_fraud), float(known_at))
        if len(pending) > MAX_PENDING_LABELS:
            del pending[next(iter(pending))]

    def _terminal_of(self, txid: str) -> _Terminal | None:
        """The terminal the index names for the payment; a restored payment may have been
        trimmed from it since (callers look)."""
        tid = self._tx_terminal.get(txid)
        if tid is None and self._restored is not None:
            tid = self._restored.terminal_of(txid)
        return None if tid is None else self._terminals.get(tid)

    def _locate(self, txid: str) -> tuple[_Terminal, int] | None:
        """The terminal holding the payment and its (last) place there, if it is held."""
        term = self._terminal_of(txid)
        if term is None:
            return None
        txids = term.txids
        try:
            return term, len(txids) - 1 - txids[::-1].index(txid)
        except ValueError:
            return None

    # --------------------------------------------------------------- maintenance

    def expire(self, now: datetime) -> int:
        """Drop state older than the longest window; returns customers + terminals dropped.

        Scores do not change for payments at or after ``now``: each payment trims its own
        customer's and terminal's history to the same horizon before reading it. A payment
        older than ``now`` may find less history than without the call, so callers pass the
        newest event time minus the lateness they allow (``newest_event_time``).
        """
        t = now.timestamp()
        dropped = 0
        keep_from = t - self._customer_keep
        for cid in list(self._customers):
            cust = self._customers[cid]
            gone = trim_restored(cust, keep_from)  # a restored history stays unbuilt
            if gone is None:
                cut = bisect_right(cust.times, keep_from)
                del cust.times[:cut], cust.amounts[:cut]
                gone = not cust.times
            if gone:
                del self._customers[cid]
                dropped += 1
        keep_from = t - self._terminal_trim  # the payments' own trim
        for tid in list(self._terminals):
            term = self._terminals[tid]
            gone = trim_restored(term, keep_from)  # its payments are in _restored, not here
            if gone is None:
                cut = bisect_right(term.times, keep_from)
                for old in term.txids[:cut]:
                    self._tx_terminal.pop(old, None)
                del term.times[:cut], term.txids[:cut], term.fraud_at[:cut]
                del term.customers[:cut], term.amounts[:cut], term.ratios[:cut]
                gone = not term.times
            if gone:
                del self._terminals[tid]
                dropped += 1
        if self._restored is not None and self._restored.newest <= t - self._terminal_trim:
            self._restored = None  # every restored payment has been trimmed
        stale = [k for k, (_, known) in self._pending.items() if known <= t - self._terminal_keep]
        for k in stale:
            del self._pending[k]
        return dropped

    def forget_customers(self, keep: Callable[[str], bool]) -> int:
        """Drop the state of customers ``keep`` rejects (partitions lost in a rebalance)."""
        gone = [cid for cid in self._customers if not keep(cid)]
        for cid in gone:
            del self._customers[cid]
        return len(gone)

    def holds_payment(self, transaction_id: str) -> bool:
        """Whether the payment is in its terminal's history (read already, not yet trimmed)."""
        if transaction_id in self._tx_terminal:
            return True
        term = self._terminal_of(transaction_id) if self._restored is not None else None
        return term is not None and transaction_id in term.txids

    @property
    def customer_count(self) -> int:
        return len(self._customers)

    @property
    def terminal_count(self) -> int:
        return len(self._terminals)

    @property
    def held_entries(self) -> int:
        """Payments and labels held, summed over every customer and terminal: the engine's
        size in list entries, for logs and for the test that it levels off."""
        total = sum(map(held, self._customers.values()))
        total += sum(map(held, self._terminals.values()))
        total += len(self._restored) if self._restored is not None else 0
        return total + len(self._tx_terminal) + len(self._pending)

    @property
    def newest_event_time(self) -> datetime | None:
        """The newest event time the engine has computed features for (UTC), if any."""
        if self._newest == -_INF:
            return None
        return datetime.fromtimestamp(self._newest, timezone.utc)

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-able data (no infinities: None means not fraud)."""
        return {
            "version": SNAPSHOT_VERSION,
            "velocity_windows": list(self.velocity_windows),
            "label_delay_days": self.label_delay_days,
            "customers": {k: [c.times[:], c.amounts[:]] for k, c in self._customers.items()},
            "terminals": {
                k: [
                    term.times[:],
                    term.txids[:],
                    term.customers[:],
                    term.amounts[:],
                    [None if f == _INF else f for f in term.fraud_at],
                    term.ratios[:],
                ]
                for k, term in self._terminals.items()
            },
            "pending": [[k, fraud, known] for k, (fraud, known) in self._pending.items()],
        }

    def columns(self) -> StateColumns:
        """The whole state as flat columns (a copy; see ``StateColumns``)."""
        flat = chain.from_iterable
        customers, terminals = self._customers.values(), self._terminals.values()
        pending = self._pending.values()
        return StateColumns(
            velocity_windows=self.velocity_windows,
            label_delay_days=self.label_delay_days,
            customer_keys=list(self._customers),
            customer_counts=[len(c.times) for c in customers],
            customer_times=list(flat(c.times for c in customers)),
            customer_amounts=list(flat(c.amounts for c in customers)),
            terminal_keys=list(self._terminals),
            terminal_counts=[len(term.times) for term in terminals],
            terminal_times=list(flat(term.times for term in terminals)),
            terminal_txids=list(flat(term.txids for term in terminals)),
            terminal_customers=list(flat(term.customers for term in terminals)),
            terminal_amounts=list(flat(term.amounts for term in terminals)),
            terminal_fraud_at=list(flat(term.fraud_at for term in terminals)),
            terminal_ratios=list(flat(term.ratios for term in terminals)),
            pending_keys=list(self._pending),
            pending_fraud=[fraud for fraud, _ in pending],
            pending_known=[known for _, known in pending],
        )

    @classmethod
    def from_columns(cls, cols: StateColumns) -> FeatureEngine:
        """The engine ``columns()`` was taken from: the same state, with each customer's and
        terminal's history left in the columns until first read (``core/histories.py``): no
        step per payment. ``ValueError`` if the columns do not add up. The columns must not
        change afterwards."""
        engine = cls(cols.velocity_windows, cols.label_delay_days)
        ckeys, tkeys = cols.customer_keys, cols.terminal_keys
        ccounts, tcounts = _plain(cols.customer_counts), _plain(cols.terminal_counts)
        customer_cols = (cols.customer_times, cols.customer_amounts)
        terminal_cols = (
            cols.terminal_times,
            _plain(cols.terminal_txids),
            _plain(cols.terminal_customers),
            cols.terminal_amounts,
            cols.terminal_fraud_at,
            cols.terminal_ratios,
        )
        pending = [_plain(cols.pending_keys), _plain(cols.pending_fraud)]
        pending.append(_plain(cols.pending_known))
        if len(ckeys) != len(ccounts) or len(tkeys) != len(tcounts):
            raise ValueError("state columns: keys and counts differ in length")
        if len({len(c) for c in pending}) > 1:
            raise ValueError("state columns: pending labels do not add up")
        for counts, values in ((ccounts, customer_cols), (tcounts, terminal_cols)):
            if any(n < 0 for n in counts) or {len(v) for v in values} != {sum(counts)}:
                raise ValueError("state columns: values do not add up to the counts")
        ttimes, txids = terminal_cols[0], terminal_cols[1]
        if len(ttimes):
            engine._newest = float(max(ttimes) if isinstance(ttimes, list) else ttimes.max())
        if txids:  # each payment's terminal, for late labels: sorted hashes, not a dict
            # First: it sorts in a thread of its own while the histories below are made.
            engine._restored = RestoredTxIndex(txids, tkeys, tcounts, engine._newest)
        engine._customers.update(restored_each(_Customer, ckeys, ccounts, customer_cols))
        engine._terminals.update(restored_each(_Terminal, tkeys, tcounts, terminal_cols))
        labels = zip(map(bool, pending[1]), pending[2], strict=True)
        engine._pending = dict(zip(pending[0], labels, strict=True))
        return engine

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> FeatureEngine:
        """Rebuild an engine from ``snapshot()`` output."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported feature snapshot version {snapshot.get('version')!r}")
        engine = cls(snapshot["velocity_windows"], snapshot["label_delay_days"])
        for k, (times, amounts) in snapshot["customers"].items():
            cust = engine._customers[k] = _Customer()
            cust.times = [float(x) for x in times]
            cust.amounts = [float(x) for x in amounts]
        for k, terminal in snapshot["terminals"].items():
            times, txids, customers, amounts, fraud_at, ratios = terminal
            term = engine._terminals[k] = _Terminal()
            term.times = [float(x) for x in times]
            term.txids = [str(x) for x in txids]
            term.customers = [str(x) for x in customers]
            term.amounts = [float(x) for x in amounts]
            term.fraud_at = [_INF if f is None else float(f) for f in fraud_at]
            term.ratios = [float(x) for x in ratios]
            for txid in term.txids:
                engine._tx_terminal[txid] = k
            engine._newest = max([engine._newest, *term.times])
        for k, fraud, known in snapshot["pending"]:
            engine._pending[str(k)] = (bool(fraud), float(known))
        return engine


def _plain(values: Any) -> list[Any]:
    """A column as a list of Python values (numpy arrays converted in one call)."""
    return values.tolist() if isinstance(values, np.ndarray) else values
