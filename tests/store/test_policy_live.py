"""stream/live.py on a real SQLite database: polled at batch boundaries, at most every N s;
a lost database keeps the last policy; an unusable version keeps the last good one."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from payscore.config import Settings
from payscore.core.decision import Policy
from payscore.core.features import FeatureEngine
from payscore.core.policy import parse_rule
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.policy import PolicyStore
from payscore.stream.live import LiveUpdates, PolicyPickup

BLOCK = {"code": "BLOCKED", "kind": "in_list", "action": "DECLINE", "params": {"list": "bl"}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path):
    folder = tmp_path / "db"
    folder.mkdir()
    engine = make_engine(Settings(database_url=f"sqlite:///{folder / 'p.db'}"))
    create_schema(engine)
    store = PolicyStore(engine)
    base = Policy.from_values({"review": 0.5, "decline": 0.9})
    scorer = SimpleNamespace(engine=FeatureEngine(), policy=base)
    clock = Clock()
    live = LiveUpdates([PolicyPickup(store, base, scorer)], poll_s=2.0, clock=clock)
    yield SimpleNamespace(
        folder=folder, engine=engine, store=store, scorer=scorer, clock=clock, live=live, base=base
    )
    engine.dispose()


def codes(policy: Policy) -> list[str]:
    return [r.code for r in policy.rules]


def test_changes_are_taken_at_a_boundary_at_most_every_poll(setup) -> None:
    s = setup
    s.live.at_batch_boundary(force=True)
    assert s.scorer.policy.version == 0 and codes(s.scorer.policy) == codes(s.base)
    s.store.add_entries("bl", "customer_id", ["c1"], "ann")
    s.store.add_rule(parse_rule(BLOCK), "ann")
    s.clock.now = 1.0  # not yet due: the consumer does not even ask
    s.live.at_batch_boundary()
    assert s.scorer.policy.version == 0
    s.clock.now = 2.5
    s.live.at_batch_boundary()
    assert s.scorer.policy.version == 2 and codes(s.scorer.policy)[-1] == "BLOCKED"
    assert s.scorer.policy.rules[-1].params["values"] == frozenset({"c1"})
    assert s.live.applied == {"policy": 2}


def test_a_lost_database_keeps_the_last_policy(setup, caplog) -> None:
    s = setup
    s.store.add_entries("bl", "customer_id", ["c1"], "ann")
    s.store.add_rule(parse_rule(BLOCK), "ann")
    s.live.at_batch_boundary(force=True)
    assert s.scorer.policy.version == 2
    moved = s.folder.rename(s.folder.with_name("gone"))
    s.engine.dispose()  # no pooled connection to the old file survives
    with caplog.at_level(logging.WARNING, logger="payscore.stream.live"):
        for t in (3.0, 6.0, 9.0):
            s.clock.now = t
            s.live.at_batch_boundary()  # never raises into the consume loop
    assert s.scorer.policy.version == 2 and codes(s.scorer.policy)[-1] == "BLOCKED"
    assert sum("cannot read the policy" in m for m in caplog.messages) == 1  # once an outage
    moved.rename(s.folder)
    s.store.add_entries("bl", "customer_id", ["c2"], "ann")
    s.clock.now = 12.0
    s.live.at_batch_boundary()
    assert s.scorer.policy.version == 3
    assert s.scorer.policy.rules[-1].params["values"] == frozenset({"c1", "c2"})


def test_an_unusable_version_keeps_the_last_good_policy(setup, caplog) -> None:
    s = setup
    s.live.at_batch_boundary(force=True)
    # A velocity window the running feature engine does not track (it tracks 60 s and 1 h).
    odd = {
        "code": "VELOCITY_10M",
        "kind": "velocity",
        "action": "REVIEW",
        "params": {"max_payments": 3, "window_seconds": 600},
    }
    s.store.add_rule(parse_rule(odd), "ann")
    s.clock.now = 5.0
    with caplog.at_level(logging.ERROR, logger="payscore.stream.live"):
        s.live.at_batch_boundary()
    assert s.scorer.policy.version == 0
    assert any(
        "policy version 1 refused" in m and "customer_nb_tx_600s" in m for m in caplog.messages
    )
    s.store.set_enabled("VELOCITY_10M", False, "ann", "engine lacks the window")
    s.clock.now = 10.0
    s.live.at_batch_boundary()
    assert s.scorer.policy.version == 2 and codes(s.scorer.policy) == codes(s.base)
