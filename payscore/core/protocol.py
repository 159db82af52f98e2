"""The Fraud Detection Handbook's evaluation protocol: its features, day split and test filter.

Fixed by the handbook (not by payscore's model choices), so kept apart from ``training.py``;
tests and the demo use the same split.
"""

from __future__ import annotations

import numpy as np

LABEL_DELAY_DAYS = 7
HANDBOOK_FEATURES = (
    "amount",
    "is_weekend",
    "is_night",
    "customer_nb_tx_1day",
    "customer_avg_amount_1day",
    "customer_nb_tx_7day",
    "customer_avg_amount_7day",
    "customer_nb_tx_30day",
    "customer_avg_amount_30day",
    "terminal_nb_tx_1day",
    "terminal_risk_1day",
    "terminal_nb_tx_7day",
    "terminal_risk_7day",
    "terminal_nb_tx_30day",
    "terminal_risk_30day",
)
# Handbook protocol, as day indexes from 2018-04-01: train 07-25..07-31, delay 08-01..08-07,
# test 08-08..08-14.
TRAIN_START_DAY = 115
PERIOD_DAYS = 7
DELAY_START_DAY = TRAIN_START_DAY + PERIOD_DAYS
TEST_START_DAY = DELAY_START_DAY + LABEL_DELAY_DAYS
TEST_END_DAY = TEST_START_DAY + PERIOD_DAYS  # exclusive


def handbook_test_mask(
    days: np.ndarray,
    customers: np.ndarray,
    labels: np.ndarray,
    train_start_day: int = TRAIN_START_DAY,
) -> np.ndarray:
    """Test-week rows minus cards already known compromised (handbook ch. 3 filtering).

    The test week starts 14 days after ``train_start_day`` (7 training days, 7 delay days).
    """
    delay_start = train_start_day + PERIOD_DAYS
    test_start = delay_start + LABEL_DELAY_DAYS
    train = (days >= train_start_day) & (days < delay_start)
    known = set(customers[train & (labels == 1)].tolist())
    mask = np.zeros(len(days), dtype=bool)
    for k in range(PERIOD_DAYS):
        # Frauds of the day before the delay period's k-th day become known before test day k.
        known |= set(customers[(days == delay_start + k - 1) & (labels == 1)].tolist())
        today = days == test_start + k
        mask |= today & ~np.isin(customers, list(known))
    return mask
