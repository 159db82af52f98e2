"""The whole learning loop against the real Kafka broker and MariaDB, one consumer throughout.

1. ``payscore consume`` decides a simulated world's payments with model A (the champion)
   while each fraud's chargeback arrives on the labels topic a week (event time) later.
2. ``payscore train --from-db --review-budget`` trains model B by dates on what the consumer
   stored (payments and labels); it is registered as a candidate.
3. ``payscore models challenger B``: the running consumer shadow-scores every payment with B.
4. ``payscore models promote B``: the consumer switches at a batch boundary.

Nothing is lost or doubled (ids and count against what was produced, offsets in order), and
every decision names the model that made it: A's decisions carry A's thresholds, B's B's.
"""

from __future__ import annotations

import re
import signal
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.config import Settings
from payscore.core import simulator
from payscore.core.model import load_artifact
from payscore.store.engine import make_engine
from payscore.store.schema import fraud_labels, scored_transactions
from payscore.stream.producer import label_message
from tests.integration.conftest import keyed, produce
from tests.integration.test_live_model import WAIT_S, runs
from tests.integration.test_live_rules import Stream, cli

pytestmark = pytest.mark.integration

BUDGET = 5  # cards a day


def decisions(db: Engine) -> list[Any]:
    c = scored_transactions.c
    names = ("kafka_offset", "transaction_id", "score", "status", "reason_codes")
    shadow = ("model_version", "challenger_version", "challenger_score")
    with db.connect() as conn:
        query = select(*(c[n] for n in (*names, *shadow))).order_by(c.kafka_offset)
        return conn.execute(query).all()


def count(db: Engine, table: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def model_reason(row: Any, thresholds: dict[str, float]) -> bool:
    """The model's reason code on ``row`` is the one ``thresholds`` give its score."""
    codes = set(re.split(r"[^A-Z0-9_]+", row.reason_codes or ""))
    very = row.score >= thresholds["decline"]
    high = not very and row.score >= thresholds["review"]
    return ("MODEL_VERY_HIGH_RISK" in codes) == very and ("MODEL_HIGH_RISK" in codes) == high


def test_consume_label_train_shadow_promote(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model, tmp_path
):
    a = load_artifact(small_model)
    topic, labels_topic = new_topic(1), new_topic(1, prefix="ps-labels")
    env = consume_runner.env
    env["PAYSCORE_INPUT_TOPIC"] = topic  # one partition: offset order is decision order
    env["PAYSCORE_LABELS_TOPIC"] = labels_topic
    env["PAYSCORE_POLICY_POLL_SECONDS"] = "1"
    cli(db_url, "models", "register", small_model)
    cli(db_url, "models", "promote", a.version)
    db = make_engine(Settings(database_url=db_url))

    # 1. The world's payments, and a chargeback for each fraud (known a week later).
    first = simulator.to_payments(small_world)
    frauds = [p for p, f in zip(first, small_world["TX_FRAUD"], strict=True) if f]
    proc = consume_runner.start("--batch-size", "200", "--max-wait-ms", "100")
    try:
        produce(kafka_bootstrap, topic, keyed(first))
        produce(
            kafka_bootstrap,
            labels_topic,
            [
                (
                    p.transaction_id.encode(),
                    label_message(p.transaction_id, True, p.event_time + timedelta(days=7)),
                )
                for p in frauds
            ],
        )

        def caught_up() -> bool:
            return count(db, scored_transactions) == len(first) and count(db, fraud_labels) == len(
                frauds
            )

        assert consume_runner.wait_until(proc, caught_up, WAIT_S)

        # 2. Train by dates on what the consumer stored; the registry gets a candidate.
        out = tmp_path / "learned.joblib"
        result = CliRunner().invoke(
            app,
            ["train", "--from-db", "--output", str(out), "--review-budget", str(BUDGET)],
            env={"PAYSCORE_DATABASE_URL": db_url},  # the password stays off the command line
        )
        assert result.exit_code == 0, result.output
        b = load_artifact(out)
        assert f"registered model {b.version} (candidate)" in result.output
        assert f"review budget {BUDGET} cards a day" in result.output
        period = b.metadata["training_period"]
        assert period["source"].startswith("database mysql")
        assert period["train_frauds"] > 0 and period["test_payments"] > 0
        assert b.metadata["review_budget"]["cards_per_day"] == BUDGET
        assert b.metadata["thresholds"]["review"] == b.metadata["review_budget"]["review_threshold"]
        listed = cli(db_url, "models", "list")
        assert b.version in listed and a.version in listed

        # 3. B shadows A on the live stream, 4. then B is promoted while it runs.
        shifted = [
            p.model_copy(
                update={
                    "transaction_id": f"{p.transaction_id}-p2",
                    "event_time": p.event_time + timedelta(days=60),
                }
            )
            for p in first[-5_000:]
        ]
        stream = Stream(kafka_bootstrap, topic, shifted)
        stream.thread.start()
        try:
            cli(db_url, "models", "challenger", b.version)

            def by(field: str, version: str) -> int:
                return sum(1 for r in decisions(db) if getattr(r, field) == version)

            assert consume_runner.wait_until(
                proc, lambda: by("challenger_version", b.version) >= 500, WAIT_S
            )
            cli(db_url, "models", "promote", b.version)
            assert consume_runner.wait_until(
                proc, lambda: by("model_version", b.version) >= 500, WAIT_S
            )
        finally:
            stream.stop.set()
            stream.thread.join(60)
        assert stream.error is None, stream.error
        sent = [*first, *stream.sent]
        assert consume_runner.wait_until(
            proc, lambda: count(db, scored_transactions) >= len(sent), WAIT_S
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # a clean stop: batches in hand are finished
    assert proc.wait(timeout=WAIT_S) == 0, consume_runner.logs()

    got = decisions(db)
    # Nothing lost or doubled: one decision per message, at offsets 0..n-1, ids as produced.
    assert [(r.kafka_offset, r.transaction_id) for r in got] == [
        (i, p.transaction_id) for i, p in enumerate(sent)
    ]
    assert count(db, fraud_labels) == len(frauds)
    # A decided, then B: one switch, at one point of the stream, after the first world.
    assert runs([r.model_version for r in got]) == [a.version, b.version]
    switch = next(i for i, r in enumerate(got) if r.model_version == b.version)
    assert switch > len(first)
    # A's decisions: no shadow, then B's shadow score beside each; the promotion empties the
    # challenger role at once, while B itself is loaded on a thread and takes over a few
    # batches later: A may decide those without a shadow.
    assert runs([r.challenger_version for r in got[:switch]]) in (
        [None, b.version],
        [None, b.version, None],
    )
    assert all(r.challenger_score is not None for r in got[:switch] if r.challenger_version)
    assert got[-1].challenger_version is None  # B, now champion, no longer shadows itself
    # Every decision names the model that made it: its reason code follows that model's
    # thresholds (B's review threshold is the budget's).
    thresholds = {a.version: a.metadata["thresholds"], b.version: b.metadata["thresholds"]}
    assert thresholds[a.version] != thresholds[b.version]
    wrong = [r for r in got if not model_reason(r, thresholds[r.model_version])]
    assert wrong == [], wrong[:5]
    db.dispose()
