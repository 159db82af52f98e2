"""A challenger set while ``payscore consume`` runs is shadow-scored on every later payment,
against real Kafka and MariaDB, and never decides.

Model B (A's estimator, a quarter of A's review threshold) becomes the challenger mid-stream.
Within a bounded wait every later decision row carries B's version, score and the status B
would have given, exactly as an uninterrupted Scorer with B decides; the status stays A's.
Rows before the switch have no shadow; nothing is lost or doubled.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from payscore.config import Settings
from payscore.core.model import load_artifact
from payscore.store.engine import make_engine
from payscore.store.schema import scored_transactions
from tests.integration.conftest import expected_decisions, payments_from
from tests.integration.test_live_model import WAIT_S, runs, variant
from tests.integration.test_live_rules import Stream, cli

pytestmark = pytest.mark.integration


def shadow_rows(db: Engine) -> list[Any]:
    c = scored_transactions.c
    names = ("kafka_offset", "transaction_id", "status", "model_version")
    shadow = ("challenger_version", "challenger_score", "challenger_status")
    query = select(*(c[n] for n in (*names, *shadow)))
    with db.connect() as conn:
        return conn.execute(query.order_by(c.kafka_offset)).all()


def test_a_challenger_is_shadow_scored_and_never_decides(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model, tmp_path
):
    version_a = load_artifact(small_model).version
    path_b, version_b = variant(small_model, tmp_path, variant="b")
    topic = new_topic(1)
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_POLICY_POLL_SECONDS"] = "1"
    cli(db_url, "models", "register", path_b)
    db = make_engine(Settings(database_url=db_url))

    def shadowed() -> int:
        return sum(1 for r in shadow_rows(db) if r.challenger_version == version_b)

    stream = Stream(kafka_bootstrap, topic, payments_from(small_world, 5, 20_000))
    proc = consume_runner.start("--batch-size", "200", "--max-wait-ms", "100", "--idle-exit", "8")
    stream.thread.start()
    try:
        assert consume_runner.wait_until(proc, lambda: len(shadow_rows(db)) >= 1000, WAIT_S)
        cli(db_url, "models", "challenger", version_b)
        assert consume_runner.wait_until(proc, lambda: shadowed() >= 1000, WAIT_S)
    finally:
        stream.stop.set()
        stream.thread.join(60)
    assert stream.error is None, stream.error
    assert proc.wait(timeout=WAIT_S) == 0, consume_runner.logs()

    got, sent = shadow_rows(db), stream.sent
    assert [(r.kafka_offset, r.transaction_id) for r in got] == [
        (i, p.transaction_id) for i, p in enumerate(sent)
    ]
    # No shadow, then B's shadow on every later payment; A decides throughout.
    assert runs([r.challenger_version for r in got]) == [None, version_b]
    assert {r.model_version for r in got} == {version_a}
    by_a = expected_decisions(small_model, sent)
    by_b = expected_decisions(path_b, sent)
    differ = 0
    for r in got:
        assert r.status == by_a[r.transaction_id].status, r
        if r.challenger_version is None:
            assert (r.challenger_score, r.challenger_status) == (None, None), r
            continue
        want = by_b[r.transaction_id]
        assert r.challenger_status == want.status, r
        assert r.challenger_score == pytest.approx(want.score, abs=1e-9), r
        differ += r.challenger_status != r.status
    assert differ > 0  # B's lower review threshold would have changed some decisions
    db.dispose()
