"""What a simulated world's test week allows any model: oracles that know the fraud scenarios.

Two oracles bound the default model's figures in docs/model.md ("Other worlds"), the second
read two ways (``HABITS``):

- the **trace oracle** scores 1 every fraud with a visible trace by a generous reading
  (``traced_frauds``) and 0 everything else;
- the **knowable oracle** scores what can be known at payment time, read strictly: 1 for a fraud
  above the scenario-1 amount and for a compromised-terminal fraud whose own attack has a known
  label (``attack_traced_frauds``), and every payment the exact probability that it is a card's
  x5 given the card's true habit and whether its compromise has shown yet (``x5_posterior``).

Read strictly, a card's true habit is not knowable either: a scorer estimates it from the card's
past payments. ``habit="history"`` makes the knowable oracle read it from the card's 30 days
before each payment, as the engine does; the worlds report gives both.

The knowable oracle is the sharper ceiling for average precision: it does not count as traced
an x5 that looks like the card's habit, or a terminal fraud whose only "trace" is another
attack's or another card's fraud. It is not a strict upper bound: a model can rank a little of
what it scores 0 above chance, as the AUC on the rest (``auc_parts``) shows. ``ap_parts``
splits average precision by fraud group (``FRAUD_GROUPS``): where a model's AP falls short of
the knowable oracle's.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

from payscore.core import simulator, training
from payscore.core.features import DAY, RATIO_FEATURE
from payscore.core.metrics import evaluate
from payscore.core.protocol import LABEL_DELAY_DAYS, TRAIN_START_DAY, handbook_test_mask

# An x5 above the card's mean + 3 standard deviations is out of its habit (a genuine draw
# reaches it once in 740 payments).
OUT_OF_HABIT_SD = 3.0


def traced_frauds(prepared: training.PreparedWorld, scenario: np.ndarray) -> np.ndarray:
    """Frauds with a visible trace at payment time, read generously: amount-based (above 220,
    or a card's x5), or at a compromised terminal that already has a known fraud in its delayed
    30-day window.

    The others, at a terminal compromised less than 7 days before, look like genuine payments
    and carry no label yet: no model can tell them apart.
    """
    y = prepared.history.labels
    names = prepared.engine.feature_names
    known_terminal_fraud = prepared.X[:, names.index("terminal_nb_fraud_30day")] > 0
    return (y == 1) & ((scenario[: len(y)] != 2) | known_terminal_fraud)


def _card_means(prepared: training.PreparedWorld, world: int) -> np.ndarray:
    """Each payment's card's true mean amount (the simulator's profile)."""
    profiles = simulator.customer_profiles(offset=simulator.seed_offset(world))
    return profiles[np.asarray(prepared.history.customer_ids, dtype=np.int64), 2]


# Where the knowable oracle reads a card's habit (its mean amount) from: "true", the
# simulator's profile, which no scorer has; "history", the median of the card's payments of
# the 30 days before, as the engine holds it (the amount over ``features.RATIO_FEATURE``).
HABITS = ("true", "history")


def card_habits(prepared: training.PreparedWorld, world: int, habit: str = "true") -> np.ndarray:
    """Each payment's card's mean amount, read as ``habit`` says (``HABITS``); a card without
    earlier payments has the payment's own amount as its habit (the engine's ratio is 1)."""
    if habit == "true":
        return _card_means(prepared, world)
    if habit != "history":
        raise ValueError(f"habit must be one of {HABITS}, not {habit!r}")
    ratio = prepared.X[:, list(prepared.engine.feature_names).index(RATIO_FEATURE)]
    amounts = prepared.history.amounts
    return np.where(ratio > 0, amounts / np.where(ratio > 0, ratio, 1.0), amounts)


def out_of_habit(prepared: training.PreparedWorld, world: int, habit: str = "true") -> np.ndarray:
    """Payments above their card's mean + OUT_OF_HABIT_SD standard deviations."""
    mean = card_habits(prepared, world, habit)
    return prepared.history.amounts > mean * (1 + OUT_OF_HABIT_SD * simulator.AMOUNT_STD_RATIO)


def attack_traced_frauds(
    prepared: training.PreparedWorld, scenario: np.ndarray, world: int
) -> np.ndarray:
    """Frauds whose own attack has left a trace by payment time (stricter than
    ``traced_frauds``):

    - amount above 220 (scenario 1): the amount is the trace;
    - compromised terminal (scenario 2): the terminal's latest payment with a known label (at
      least the label delay old) is a scenario-2 fraud less than the attack's length older,
      so of the same attack. Another attack's fraud, or a card's own fraud at the terminal,
      says nothing of an attack that began within the delay;
    - a card's x5 (scenario 3): the amount is out of the card's habit (``out_of_habit``).
    """
    h = prepared.history
    y, times, n = h.labels, h.times, len(h.labels)
    scen = scenario[:n]
    terminals = np.asarray(h.terminal_ids, dtype=np.int64)
    # The latest payment at the same terminal at or before t - delay: one sorted search on
    # (terminal, time); times are whole seconds, far below the 1e10 that separates terminals.
    order = np.lexsort((times, terminals))
    keys = terminals[order] * 1e10 + times[order]
    wanted = terminals * 1e10 + (times - LABEL_DELAY_DAYS * DAY)
    pos = np.searchsorted(keys, wanted, side="right") - 1
    prev = order[np.maximum(pos, 0)]
    known = (pos >= 0) & (terminals[prev] == terminals)
    attack_days = simulator.COMPROMISED_TERMINAL_DAYS * DAY
    same_attack = known & (scen[prev] == 2) & (y[prev] == 1) & (times - times[prev] < attack_days)
    return (y == 1) & (
        (scen == 1) | ((scen == 2) & same_attack) | ((scen == 3) & out_of_habit(prepared, world))
    )


def x5_posterior(
    prepared: training.PreparedWorld, scenario: np.ndarray, world: int, habit: str = "true"
) -> np.ndarray:
    """Each payment's probability of being a card's x5, from what can be known at its time and
    the simulator's true parameters: the card's habit (amounts normal, mean m, sd m/2; m read
    as ``habit`` says), whether the card is compromised *and has shown it* by an earlier
    out-of-habit x5 in the same compromise (then a third of its payments are x5), else the
    base rate; and the likelihood of the amount as 5 x a habitual draw against as a habitual
    draw."""
    h = prepared.history
    n = len(h.labels)
    scen = scenario[:n]
    days, times, amounts = prepared.days, h.times, h.amounts
    m = card_habits(prepared, world, habit)
    sd = m * simulator.AMOUNT_STD_RATIO

    def density(x: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((x - m) / sd) ** 2) / sd

    likelihood = (density(amounts / 5) / 5) / np.maximum(density(amounts), 1e-300)
    share = 1 / 3  # of a compromised card's payments
    compromised_at_once = simulator.COMPROMISED_CARDS_A_DAY * simulator.COMPROMISED_CARD_DAYS
    prior = np.full(n, compromised_at_once / simulator.N_CUSTOMERS * share)
    shown = out_of_habit(prepared, world, habit) & (scen == 3)
    cards = np.asarray(h.customer_ids, dtype=np.int64)
    order = np.argsort(cards, kind="stable")
    bounds = np.searchsorted(cards[order], np.arange(simulator.N_CUSTOMERS + 1))
    offset = simulator.seed_offset(world)
    for day in range(int(days.max()) + 1):
        for card in simulator.compromised_cards(day, offset=offset):
            rows = order[bounds[card] : bounds[card + 1]]
            rows = rows[(days[rows] >= day) & (days[rows] < day + simulator.COMPROMISED_CARD_DAYS)]
            if shown[rows].any():
                prior[rows[times[rows] > times[rows[shown[rows]]].min()]] = share
    odds = prior * likelihood
    return odds / (odds + 1 - prior)


def knowable_oracle(
    prepared: training.PreparedWorld,
    scenario: np.ndarray,
    world: int,
    train_start_day: int = TRAIN_START_DAY,
    habit: str = "true",
    scores: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC ROC, AP and CP@100 on the week tested after ``train_start_day`` of the knowable
    oracle (module docstring), the cards' habits read as ``habit`` says (``HABITS``).
    ``scores``: the oracle's scores of every payment, when the caller already has them
    (``knowable_scores`` with the same ``habit``)."""
    if scores is None:
        scores = knowable_scores(prepared, scenario, world, habit)
    return _on_test_week(prepared, scores, train_start_day)


def knowable_scores(
    prepared: training.PreparedWorld, scenario: np.ndarray, world: int, habit: str = "true"
) -> np.ndarray:
    """The knowable oracle's score of every payment (module docstring)."""
    n = len(prepared.history.labels)
    certain = attack_traced_frauds(prepared, scenario, world) & (scenario[:n] != 3)
    return np.maximum(certain.astype(float), x5_posterior(prepared, scenario, world, habit))


def trace_oracle(
    prepared: training.PreparedWorld,
    scenario: np.ndarray,
    train_start_day: int = TRAIN_START_DAY,
) -> dict[str, float]:
    """AUC ROC, AP and CP@100, on the week tested after ``train_start_day``, of an oracle that
    scores 1 every traced fraud (``traced_frauds``) and 0 everything else; ties among the zero
    scores may add a lucky card or two to CP@100."""
    return _on_test_week(prepared, traced_frauds(prepared, scenario).astype(float), train_start_day)


def trace_ceiling(
    prepared: training.PreparedWorld,
    scenario: np.ndarray,
    train_start_day: int = TRAIN_START_DAY,
) -> float:
    """The trace oracle's CP@100 (``trace_oracle``): what the test week allows."""
    return trace_oracle(prepared, scenario, train_start_day)["card_precision_at_100"]


def test_week(
    prepared: training.PreparedWorld, train_start_day: int = TRAIN_START_DAY
) -> np.ndarray:
    """The payments the handbook protocol tests after ``train_start_day`` (known cards out)."""
    customers = np.asarray(prepared.history.customer_ids)
    return handbook_test_mask(prepared.days, customers, prepared.history.labels, train_start_day)


def _on_test_week(
    prepared: training.PreparedWorld, scores: np.ndarray, train_start_day: int
) -> dict[str, float]:
    y, test = prepared.history.labels, test_week(prepared, train_start_day)
    customers = np.asarray(prepared.history.customer_ids)[test]
    return evaluate(y[test], scores[test], prepared.days[test], customers)


def auc_parts(y: np.ndarray, scores: np.ndarray, traced: np.ndarray) -> dict[str, float]:
    """AUC ROC of the ``traced`` frauds against every genuine payment, of the other frauds
    against them, and the standard error of the latter's AUC were they ranked at random
    (sqrt(1 / 12n) for n frauds among many genuine payments)."""
    genuine = scores[y == 0]
    parts: dict[str, float] = {}
    for name, frauds in (("traced", traced & (y == 1)), ("rest", ~traced & (y == 1))):
        chosen = scores[frauds]
        labels = np.r_[np.ones(len(chosen)), np.zeros(len(genuine))]
        parts[name] = float(roc_auc_score(labels, np.r_[chosen, genuine])) if len(chosen) else 1.0
    rest = int((~traced & (y == 1)).sum())
    parts["rest_n"] = float(rest)
    parts["rest_chance_se"] = math.sqrt(1 / (12 * rest)) if rest else 0.0
    return parts


# The fraud groups ``ap_parts`` splits average precision into, by scenario and trace.
FRAUD_GROUPS = (
    "amount",
    "terminal, traced",
    "terminal, untraced",
    "card x5, out of habit",
    "card x5, in habit",
)


def fraud_groups(y: np.ndarray, scenario: np.ndarray, traced: np.ndarray) -> dict[str, np.ndarray]:
    """The frauds of each group (``FRAUD_GROUPS``); ``traced`` is ``attack_traced_frauds``
    (for a card's x5: out of the card's habit)."""
    fraud = y == 1
    return {
        "amount": fraud & (scenario == 1),
        "terminal, traced": fraud & (scenario == 2) & traced,
        "terminal, untraced": fraud & (scenario == 2) & ~traced,
        "card x5, out of habit": fraud & (scenario == 3) & traced,
        "card x5, in habit": fraud & (scenario == 3) & ~traced,
    }


def ap_parts(y: np.ndarray, scores: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, float]:
    """Each group's share of the average precision of ``scores``: the precision at each of its
    frauds' scores (every payment scored at least as high counted), summed, over all frauds.
    Over groups that split the frauds the shares add up to scikit-learn's AP, ties included."""
    ranked = np.sort(scores)
    fraud_ranked = np.sort(scores[y == 1])
    at_or_above = len(ranked) - np.searchsorted(ranked, scores, side="left")
    frauds_at_or_above = len(fraud_ranked) - np.searchsorted(fraud_ranked, scores, side="left")
    precision = frauds_at_or_above / np.maximum(at_or_above, 1)
    total = max(len(fraud_ranked), 1)
    return {
        name: float(precision[members & (y == 1)].sum() / total) for name, members in groups.items()
    }
