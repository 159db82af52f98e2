"""The simulated world reproduces the handbook's published counts."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pytest

from payscore.core import protocol, simulator


@pytest.fixture(scope="module")
def world():
    return simulator.load_world()


@pytest.mark.slow
def test_published_counts(world):
    assert len(world) == 1_754_155
    assert int(world["TX_FRAUD"].sum()) == 14_681
    assert list(world.columns) == list(simulator.COLUMNS)
    assert (world["TRANSACTION_ID"].to_numpy() == np.arange(len(world))).all()
    assert world["TX_TIME_DAYS"].max() == 182


@pytest.mark.slow
def test_protocol_week_counts(world):
    days = world["TX_TIME_DAYS"].to_numpy()
    labels = world["TX_FRAUD"].to_numpy()
    customers = world["CUSTOMER_ID"].to_numpy()
    train = (days >= protocol.TRAIN_START_DAY) & (days < protocol.DELAY_START_DAY)
    assert (int(train.sum()), int(labels[train].sum())) == (67_240, 598)
    test = protocol.handbook_test_mask(days, customers, labels)
    assert (int(test.sum()), int(labels[test].sum())) == (58_264, 385)


def test_cached_world_matches_a_fresh_small_generation():
    small = simulator.generate_world(n_customers=50, n_terminals=100, n_days=20)
    again = simulator.generate_world(n_customers=50, n_terminals=100, n_days=20)
    assert small.equals(again)
    assert small["TX_TIME_SECONDS"].is_monotonic_increasing


def test_payments_and_csv(tmp_path, world):
    head = world.iloc[:3]
    payments = simulator.to_payments(head)
    first = payments[0]
    assert first.transaction_id == "0" and first.currency == "EUR"
    assert first.customer_id == str(head["CUSTOMER_ID"].iloc[0])
    assert first.amount == Decimal(f"{head['TX_AMOUNT'].iloc[0]:.2f}")
    assert first.event_time == datetime(2018, 4, 1, 0, 0, 31, tzinfo=timezone.utc)
    path = tmp_path / "w.csv"
    assert simulator.write_csv(head, path) == 3
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["transaction_id"] == "0"
    assert rows[0]["event_time"].startswith("2018-04-01T00:00:31")
    assert set(rows[0]) == set(simulator.CSV_HEADER)
