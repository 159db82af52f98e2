"""The Fraud Detection Handbook's simulated card world, reproduced draw for draw.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection", ch. 3:
5,000 customers, 10,000 terminals, 183 days from 2018-04-01 and three fraud scenarios give
1,754,155 transactions of which 14,681 are fraud. The draw order of the original code is kept
exactly (that is what makes the counts match); only the bookkeeping around it is faster.
The world is cached on disk so repeated runs do not regenerate it.
"""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from payscore.core.cache import cache_dir
from payscore.core.schema import Payment

log = logging.getLogger(__name__)

START_DATE = "2018-04-01"
START = datetime(2018, 4, 1, tzinfo=timezone.utc)
N_CUSTOMERS = 5_000
N_TERMINALS = 10_000
N_DAYS = 183
RADIUS = 5.0
CACHE_VERSION = 1
# World N shifts every seed of the handbook world (world 0) by N * WORLD_SEED_STRIDE: the
# customer and terminal tables, each customer's stream and each day's fraud draws. The stride
# exceeds any customer id or day index, so no two worlds share a seed; the largest world keeps
# every seed below numpy's 2**32.
WORLD_SEED_STRIDE = 1_000_000
MAX_WORLD = 4_000
# Scenario 2: each day this many terminals are compromised for COMPROMISED_TERMINAL_DAYS;
# scenario 3: this many cards for COMPROMISED_CARD_DAYS, a third of their payments x5.
COMPROMISED_TERMINALS_A_DAY, COMPROMISED_TERMINAL_DAYS = 2, 28
COMPROMISED_CARDS_A_DAY, COMPROMISED_CARD_DAYS = 3, 14
HIGH_AMOUNT = 220  # scenario 1: every payment above it is fraud
AMOUNT_STD_RATIO = 0.5  # a card's amounts: normal(mean, mean x this), its own mean per card
COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)
CSV_HEADER = (
    "transaction_id",
    "customer_id",
    "terminal_id",
    "amount",
    "currency",
    "event_time",
    "is_fraud",
)


def seed_offset(world: int) -> int:
    """What world ``world`` adds to every seed of the handbook world (0 for world 0)."""
    if isinstance(world, bool) or not isinstance(world, int) or not 0 <= world <= MAX_WORLD:
        raise ValueError(f"world must be an integer from 0 to {MAX_WORLD}, not {world!r}")
    return world * WORLD_SEED_STRIDE


def customer_profiles(n_customers: int = N_CUSTOMERS, offset: int = 0) -> np.ndarray:
    """(n, 4): x, y, mean_amount, mean_nb_tx_per_day, drawn in id order from seed 0."""
    rs = np.random.RandomState(0 + offset)
    out = np.empty((n_customers, 4))
    for i in range(n_customers):
        x = rs.uniform(0, 100)
        y = rs.uniform(0, 100)
        mean_amount = rs.uniform(5, 100)
        mean_nb_tx = rs.uniform(0, 4)
        out[i] = (x, y, mean_amount, mean_nb_tx)
    return out


def terminal_profiles(n_terminals: int = N_TERMINALS, offset: int = 0) -> np.ndarray:
    """(n, 2): x, y of each terminal, drawn in id order from seed 1."""
    rs = np.random.RandomState(1 + offset)
    out = np.empty((n_terminals, 2))
    for i in range(n_terminals):
        out[i, 0] = rs.uniform(0, 100)
        out[i, 1] = rs.uniform(0, 100)
    return out


def _customer_transactions(
    customer_id: int, profile: np.ndarray, terminals: list[int], n_days: int, offset: int = 0
) -> tuple[list[int], list[int], list[float]]:
    """One customer's (seconds, terminal, raw amount) in the original draw order."""
    py_rng = random.Random(customer_id + offset)
    rs = np.random.RandomState(customer_id + offset)
    poisson, normal, uniform = rs.poisson, rs.normal, rs.uniform
    choice = py_rng.choice
    mean_amount = float(profile[2])
    std_amount = mean_amount * AMOUNT_STD_RATIO
    mean_nb_tx = float(profile[3])
    seconds: list[int] = []
    terminal_ids: list[int] = []
    amounts: list[float] = []
    for day in range(n_days):
        nb_tx = poisson(mean_nb_tx)
        for _ in range(nb_tx):
            time_tx = int(normal(43200.0, 20000))
            if 0 < time_tx < 86400:
                amount = normal(mean_amount, std_amount)
                if amount < 0:
                    amount = uniform(0, mean_amount * 2)
                if terminals:
                    seconds.append(time_tx + day * 86400)
                    terminal_ids.append(choice(terminals))
                    amounts.append(amount)
    return seconds, terminal_ids, amounts


def compromised_cards(day: int, n_customers: int = N_CUSTOMERS, offset: int = 0) -> np.ndarray:
    """The cards scenario 3 compromises on ``day`` (the handbook's draw)."""
    ids = pd.Series(np.arange(n_customers), name="CUSTOMER_ID")
    return ids.sample(n=COMPROMISED_CARDS_A_DAY, random_state=day + offset).to_numpy()


def _add_frauds(df: pd.DataFrame, n_customers: int, n_terminals: int, offset: int = 0) -> None:
    """The three scenarios, in order, each overwriting the label (in place)."""
    fraud = np.zeros(len(df), dtype=np.int64)
    scenario = np.zeros(len(df), dtype=np.int64)
    amount = df["TX_AMOUNT"].to_numpy().copy()
    days = df["TX_TIME_DAYS"].to_numpy()
    terminals = df["TERMINAL_ID"].to_numpy()
    customers = df["CUSTOMER_ID"].to_numpy()

    big = amount > HIGH_AMOUNT
    fraud[big], scenario[big] = 1, 1

    terminal_ids = pd.Series(np.arange(n_terminals), name="TERMINAL_ID")
    max_day = int(days.max())
    # Per-day row ranges: rows are sorted by time, hence by day.
    day_start = np.searchsorted(days, np.arange(max_day + 30), side="left")
    for day in range(max_day):
        compromised = terminal_ids.sample(
            n=COMPROMISED_TERMINALS_A_DAY, random_state=day + offset
        ).to_numpy()
        lo, hi = day_start[day], day_start[min(day + COMPROMISED_TERMINAL_DAYS, len(day_start) - 1)]
        rows = lo + np.flatnonzero(np.isin(terminals[lo:hi], compromised))
        fraud[rows], scenario[rows] = 1, 2
    for day in range(max_day):
        compromised = compromised_cards(day, n_customers, offset)
        lo, hi = day_start[day], day_start[min(day + COMPROMISED_CARD_DAYS, len(day_start) - 1)]
        rows = lo + np.flatnonzero(np.isin(customers[lo:hi], compromised))
        picked = random.Random(day + offset).sample(rows.tolist(), k=len(rows) // 3)
        amount[picked] = amount[picked] * 5
        fraud[picked], scenario[picked] = 1, 3
    df["TX_AMOUNT"] = amount
    df["TX_FRAUD"] = fraud
    df["TX_FRAUD_SCENARIO"] = scenario


def generate_world(
    n_customers: int = N_CUSTOMERS,
    n_terminals: int = N_TERMINALS,
    n_days: int = N_DAYS,
    radius: float = RADIUS,
    world: int = 0,
) -> pd.DataFrame:
    """Generate the labelled world (no cache). The defaults are the handbook's benchmark;
    ``world`` N > 0 draws another world of the same process (every seed shifted, see
    ``seed_offset``)."""
    offset = seed_offset(world)
    customers = customer_profiles(n_customers, offset)
    terminals_xy = terminal_profiles(n_terminals, offset)
    all_seconds: list[int] = []
    all_customers: list[int] = []
    all_terminals: list[int] = []
    all_amounts: list[float] = []
    for cid in range(n_customers):
        dist = np.sqrt(np.sum(np.square(customers[cid, :2] - terminals_xy), axis=1))
        available = np.where(dist < radius)[0].tolist()
        seconds, terms, amounts = _customer_transactions(
            cid, customers[cid], available, n_days, offset
        )
        all_seconds += seconds
        all_terminals += terms
        all_amounts += amounts
        all_customers += [cid] * len(seconds)
    seconds_arr = np.asarray(all_seconds, dtype=np.int64)
    df = pd.DataFrame(
        {
            "TX_DATETIME": pd.Timestamp(START_DATE) + pd.to_timedelta(seconds_arr, unit="s"),
            "CUSTOMER_ID": np.asarray(all_customers, dtype=np.int64),
            "TERMINAL_ID": np.asarray(all_terminals, dtype=np.int64),
            "TX_AMOUNT": np.round(np.asarray(all_amounts, dtype=np.float64), 2),
            "TX_TIME_SECONDS": seconds_arr,
            "TX_TIME_DAYS": seconds_arr // 86400,
        }
    )
    # The original sorts with pandas' default (non-stable) sort; keep it for identical ids.
    df = df.sort_values("TX_DATETIME").reset_index(drop=True)
    df.insert(0, "TRANSACTION_ID", np.arange(len(df), dtype=np.int64))
    _add_frauds(df, n_customers, n_terminals, offset)
    return df


def world_cache_name(world: int = 0) -> str:
    """The cache file of a full-size world (the handbook world keeps its historical name)."""
    seed_offset(world)
    prefix = "handbook-world" if world == 0 else f"world-{world}"
    return f"{prefix}-v{CACHE_VERSION}.npz"


def load_world(use_cache: bool = True, world: int = 0) -> pd.DataFrame:
    """The handbook world (or world N, see ``generate_world``), from the on-disk cache when
    present (about 16 s to generate)."""
    path = cache_dir() / world_cache_name(world)
    if use_cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return _frame_from_arrays({name: data[name] for name in data.files})
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable world cache %s: %s", path, e)
    df = generate_world(world=world)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            arrays: dict[str, Any] = _arrays_from_frame(df)
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write world cache %s: %s", path, e)
    return df


def _arrays_from_frame(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy() for c in COLUMNS if c != "TX_DATETIME"}


def _frame_from_arrays(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    seconds = arrays["TX_TIME_SECONDS"]
    df = pd.DataFrame({c: arrays[c] for c in COLUMNS if c != "TX_DATETIME"})
    df.insert(1, "TX_DATETIME", pd.Timestamp(START_DATE) + pd.to_timedelta(seconds, unit="s"))
    return df


MIN_AMOUNT = 0.01


def payment_amounts(df: pd.DataFrame) -> np.ndarray:
    """Amounts as payments carry them: in cents (scenario 3's x5 leaves float noise such as
    310.79999999999995), and the 42 draws that round to 0.00 become 0.01.

    A Payment's amount is positive with two decimals; training uses these same values so that
    the consumer and the training features see identical inputs.
    """
    amounts = np.round(df["TX_AMOUNT"].to_numpy(dtype=np.float64), 2)
    return np.maximum(amounts, MIN_AMOUNT)


def event_seconds(df: pd.DataFrame) -> np.ndarray:
    """UTC epoch seconds (float64) of each row's event time."""
    return START.timestamp() + df["TX_TIME_SECONDS"].to_numpy(dtype=np.float64)


def iter_payments(df: pd.DataFrame) -> Iterator[Payment]:
    """Rows as Payment objects: string ids, EUR, UTC event times."""
    for tx, cust, term, amount, secs in zip(
        df["TRANSACTION_ID"].to_numpy().tolist(),
        df["CUSTOMER_ID"].to_numpy().tolist(),
        df["TERMINAL_ID"].to_numpy().tolist(),
        payment_amounts(df).tolist(),
        df["TX_TIME_SECONDS"].to_numpy().tolist(),
        strict=True,
    ):
        yield Payment(
            transaction_id=str(tx),
            customer_id=str(cust),
            terminal_id=str(term),
            amount=Decimal(f"{amount:.2f}"),
            currency="EUR",
            event_time=START + timedelta(seconds=secs),
        )


def to_payments(df: pd.DataFrame) -> list[Payment]:
    """All rows of ``df`` as Payment objects (see ``iter_payments``)."""
    return list(iter_payments(df))


def write_csv(df: pd.DataFrame, path: str | Path) -> int:
    """Write a labelled CSV in the ``payscore train --data`` format; returns rows written."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for tx, cust, term, amount, secs, fraud in zip(
            df["TRANSACTION_ID"].to_numpy().tolist(),
            df["CUSTOMER_ID"].to_numpy().tolist(),
            df["TERMINAL_ID"].to_numpy().tolist(),
            payment_amounts(df).tolist(),
            df["TX_TIME_SECONDS"].to_numpy().tolist(),
            df["TX_FRAUD"].to_numpy().tolist(),
            strict=True,
        ):
            when = (START + timedelta(seconds=secs)).isoformat()
            writer.writerow((tx, cust, term, f"{amount:.2f}", "EUR", when, int(fraud)))
            n += 1
    return n
