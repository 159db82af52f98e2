"""The oracles that bound the default model on a simulated world (payscore/bench/ceilings.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from payscore.bench import ceilings
from payscore.core import simulator, training
from payscore.core.features import DAY, FeatureEngine


def _prepared(rows: list[tuple[float, int, int, float, int]]) -> training.PreparedWorld:
    """(day, card, terminal, amount, label) rows, in time order, as a prepared world."""
    days = np.array([r[0] for r in rows])
    history = training.History(
        [f"t{i}" for i in range(len(rows))],
        [str(r[1]) for r in rows],
        [str(r[2]) for r in rows],
        np.array([r[3] for r in rows]),
        days * DAY,
        np.array([r[4] for r in rows], dtype=np.int64),
    )
    X = np.zeros((len(rows), 1))
    return training.PreparedWorld(history, FeatureEngine(), X, np.floor(days).astype(np.int64))


def _density(x, m):
    """The simulator's amount density of a card with mean ``m`` (normal, std m/2), at ``x``."""
    return np.exp(-0.5 * ((x - m) / (m / 2)) ** 2) / (m / 2)


def test_a_terminal_fraud_is_traced_only_by_a_known_fraud_of_its_own_attack():
    # (day, card, terminal, amount, label), scenario alongside.
    rows = [
        (0.0, 1, 10, 20.0, 1),  # terminal 10: attack starts
        (8.0, 2, 10, 20.0, 1),  # 8 days later, the first payment known is the attack's: traced
        (0.1, 3, 11, 300.0, 1),  # terminal 11: a card's big fraud (scenario 1)
        (8.1, 4, 11, 20.0, 1),  # an attack begun since: its only "trace" is another fraud
        (0.2, 5, 12, 20.0, 1),  # terminal 12: attack
        (3.2, 6, 12, 20.0, 1),  # 3 days later: the first label is not known yet
        (0.3, 7, 13, 20.0, 1),  # terminal 13: attack
        (30.3, 8, 13, 20.0, 1),  # 30 days later: a new attack (one lasts 28 days)
    ]
    scenario = np.array([2, 2, 1, 2, 2, 2, 2, 2])
    order = np.argsort([r[0] for r in rows], kind="stable")
    prepared = _prepared([rows[i] for i in order])
    traced = ceilings.attack_traced_frauds(prepared, scenario[order], world=0)
    by_row = dict(zip(order.tolist(), traced.tolist(), strict=True))
    assert [by_row[i] for i in range(len(rows))] == [
        False, True, True, False, False, False, False, False,
    ]  # fmt: skip


def test_a_cards_x5_is_likely_only_once_the_card_has_shown_its_compromise():
    day = 40
    card = int(simulator.compromised_cards(day)[0])
    mean = simulator.customer_profiles()[card, 2]
    recent = {int(c) for d in range(day - 14, day + 1) for c in simulator.compromised_cards(d)}
    other = min(set(range(100)) - recent)
    rows = [
        (day + 0.1, card, 1, mean * 1.6, 0),  # before the compromise shows: base rate
        (day + 0.2, card, 2, mean * 4.0, 1),  # an x5 far out of the card's habit
        (day + 0.3, card, 3, mean * 1.6, 0),  # now a third of its payments are x5
        (day + 0.4, other, 4, mean * 1.6, 0),
    ]
    scenario = np.array([0, 3, 0, 0])
    prepared = _prepared(rows)
    posterior = ceilings.x5_posterior(prepared, scenario, world=0)
    m, a = simulator.customer_profiles()[[card, card, card, other], 2], prepared.history.amounts
    ratio = _density(a / 5, m) / 5 / _density(a, m)
    assert posterior[2] == pytest.approx(ratio[2] / 3 / (ratio[2] / 3 + 2 / 3))
    # The same amount: the base rate before, a third once the compromise has shown.
    assert posterior[0] < 0.001 and posterior[3] < 0.001 and posterior[2] > 100 * posterior[0]
    assert posterior[1] > 0.99  # out of habit: nearly certain even at the base rate
    assert ceilings.out_of_habit(prepared, world=0).tolist() == [False, True, False, False]


def test_auc_parts_split_at_the_traced_frauds():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.3, 0.2])
    traced = np.array([True, True, False, False, False, False, False])
    parts = ceilings.auc_parts(y, scores, traced)
    assert parts["traced"] == 1.0 and parts["rest"] == 0.0
    assert parts["rest_n"] == 1 and parts["rest_chance_se"] == pytest.approx((1 / 12) ** 0.5)


def test_ap_parts_add_up_to_the_average_precision_ties_included():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(int)
    # Coarse scores: many ties, between frauds and genuine payments alike.
    scores = np.round(rng.random(400) * 0.6 + 0.4 * y, 1)
    scenario = np.where(y == 1, rng.integers(1, 4, 400), 0)
    traced = rng.random(400) < 0.5
    groups = ceilings.fraud_groups(y, scenario, traced)
    assert list(groups) == list(ceilings.FRAUD_GROUPS)
    # Each fraud in exactly one group, no genuine payment in any.
    assert (sum(g.astype(int) for g in groups.values()) == y).all()
    parts = ceilings.ap_parts(y, scores, groups)
    assert sum(parts.values()) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert all(v > 0 for v in parts.values())


def test_ap_parts_give_each_fraud_the_precision_at_its_score():
    y = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.7, 0.1])
    first, tied, last = (np.arange(5) == i for i in (0, 2, 4))
    parts = ceilings.ap_parts(y, scores, {"first": first, "tied": tied, "last": last})
    # 1/1 at the top; 2 frauds of the 4 scored 0.7 or more (the tie counted); 3 of 5.
    assert parts == pytest.approx({"first": 1 / 3, "tied": 2 / 4 / 3, "last": 3 / 5 / 3})


def test_habits_from_history_are_what_the_engine_saw_before_each_payment():
    day = 40
    card = int(simulator.compromised_cards(day)[0])
    rows = [(day + 0.1 * k, card, k, amount, 0) for k, amount in enumerate((20.0, 40.0, 30.0))]
    prepared = _prepared(rows)
    names = list(prepared.engine.feature_names)
    prepared.X = np.zeros((3, len(names)))
    # The engine's ratio to the card's median of its 30 days before (1.0: no history yet).
    prepared.X[:, names.index("customer_amount_ratio_median_30day")] = [1.0, 2.0, 1.0]
    habits = ceilings.card_habits(prepared, world=0, habit="history")
    assert habits.tolist() == [20.0, 20.0, 30.0]
    true_mean = simulator.customer_profiles()[card, 2]
    assert ceilings.card_habits(prepared, world=0).tolist() == [true_mean] * 3
    # The posterior reads the habit it is given: 40 is 2x the history's 20.
    by_history = ceilings.x5_posterior(prepared, np.zeros(3), world=0, habit="history")
    m, a = 20.0, 40.0
    base = simulator.COMPROMISED_CARDS_A_DAY * simulator.COMPROMISED_CARD_DAYS
    prior = base / simulator.N_CUSTOMERS / 3
    odds = prior * _density(a / 5, m) / 5 / _density(a, m)
    assert by_history[1] == pytest.approx(odds / (odds + 1 - prior))
    with pytest.raises(ValueError, match="habit must be one of"):
        ceilings.card_habits(prepared, world=0, habit="guess")
