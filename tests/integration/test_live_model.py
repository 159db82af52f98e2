"""A model promoted (and rolled back) while ``payscore consume`` runs, against real Kafka and
MariaDB; and the pickup's refusals (tampered file, features the engine lacks, database away).

Model B is model A's estimator with other thresholds (so another version, and visibly other
decisions). A is the champion when the consumer starts; B is promoted mid-stream, then rolled
back. Within a bounded wait later decisions carry B's version, then A's again; in offset order
the versions run A, B, A; every decision is exactly what an uninterrupted Scorer with the model
it names decides (so the feature engine's state carried over); nothing is lost or doubled.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url, select

from payscore.config import Settings
from payscore.core.model import ModelArtifact, load_artifact, save_artifact
from payscore.pipeline import build_scorer
from payscore.store import registry
from payscore.store.engine import make_engine
from payscore.store.policy import PolicyStore
from payscore.store.schema import scored_transactions
from payscore.stream.live import LiveUpdates, ModelPickup, PolicyPickup
from tests.integration.conftest import expected_decisions, payments_from, wait_until
from tests.integration.test_live_rules import Stream, cli

pytestmark = pytest.mark.integration

WAIT_S = 120  # generous: the machine is shared


def variant(base_path: str, out: Path, **metadata: Any) -> tuple[str, str]:
    """Model A's estimator saved with other metadata (review threshold at a quarter of A's):
    returns (path, version)."""
    a = load_artifact(base_path)
    thresholds = dict(a.metadata["thresholds"])
    thresholds["review"] = thresholds["review"] / 4
    b = ModelArtifact(
        a.estimator, a.feature_names, {**a.metadata, "thresholds": thresholds, **metadata}
    )
    path = out / "model.joblib"
    save_artifact(b, path)
    assert b.version != a.version
    return str(path), b.version


def rows(db: Engine) -> list[Any]:
    c = scored_transactions.c
    query = select(c.kafka_offset, c.transaction_id, c.status, c.score, c.model_version)
    with db.connect() as conn:
        return conn.execute(query.order_by(c.kafka_offset)).all()


def runs(values: list[str]) -> list[str]:
    """Consecutive equal values collapsed: the order the versions took over."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def test_a_promotion_and_a_rollback_reach_a_running_consumer(
    consume_runner, kafka_bootstrap, new_topic, db_url, small_world, small_model, tmp_path
):
    version_a = load_artifact(small_model).version
    path_b, version_b = variant(small_model, tmp_path, variant="b")
    topic = new_topic(1)  # one partition: offset order is decision order
    consume_runner.env["PAYSCORE_INPUT_TOPIC"] = topic
    consume_runner.env["PAYSCORE_POLICY_POLL_SECONDS"] = "1"
    cli(db_url, "models", "register", small_model)
    cli(db_url, "models", "promote", version_a)  # A decides from the start, as model_path
    cli(db_url, "models", "register", path_b)

    db = make_engine(Settings(database_url=db_url))
    stream = Stream(kafka_bootstrap, topic, payments_from(small_world, 5, 20_000))
    proc = consume_runner.start("--batch-size", "200", "--max-wait-ms", "100", "--idle-exit", "8")
    stream.thread.start()
    try:

        def decided(version: str | None = None, after: int = -1) -> int:
            return sum(
                1
                for r in rows(db)
                if r.kafka_offset > after and (version is None or r.model_version == version)
            )

        assert consume_runner.wait_until(proc, lambda: decided() >= 1000, WAIT_S)
        promoted_at = time.monotonic()
        cli(db_url, "models", "promote", version_b)
        assert consume_runner.wait_until(proc, lambda: decided(version_b) >= 500, WAIT_S)
        print(f"first decisions by B seen {time.monotonic() - promoted_at:.1f} s after promote")
        last_b = max(r.kafka_offset for r in rows(db) if r.model_version == version_b)
        out = cli(db_url, "models", "rollback")
        assert version_a in out
        assert consume_runner.wait_until(
            proc, lambda: decided(version_a, after=last_b) >= 500, WAIT_S
        )
    finally:
        stream.stop.set()
        stream.thread.join(60)
    assert stream.error is None, stream.error
    assert proc.wait(timeout=WAIT_S) == 0, consume_runner.logs()

    got, sent = rows(db), stream.sent
    # Nothing lost or doubled: one decision per message, at offsets 0..n-1, ids as sent.
    assert [(r.kafka_offset, r.transaction_id) for r in got] == [
        (i, p.transaction_id) for i, p in enumerate(sent)
    ]
    # A, then B, then A again: each switch at one point of the stream.
    assert runs([r.model_version for r in got]) == [version_a, version_b, version_a]
    # Each decision is what an uninterrupted Scorer with the model it names decides: the
    # engine's state carried across both switches, and B decided with its own thresholds.
    expected = {version_a: expected_decisions(small_model, sent)}
    expected[version_b] = expected_decisions(path_b, sent)
    differ = 0
    for r in got:
        want = expected[r.model_version][r.transaction_id]
        assert (r.status, r.score) == (want.status, pytest.approx(want.score, abs=1e-9)), r
        other = expected[version_a if r.model_version == version_b else version_b]
        differ += other[r.transaction_id].status != r.status
    assert differ > 0  # B's lower review threshold changed some decisions it made
    logs = "".join(p.read_text(errors="replace") for p in consume_runner.log_dir.glob("*.log"))
    assert f"model version {version_b} in use" in logs
    assert f"model version {version_a} in use" in logs
    db.dispose()


def test_the_pickup_keeps_the_current_model_when_the_new_one_is_unusable(
    db_url, small_model, tmp_path, caplog
):
    settings = Settings(database_url=db_url)
    db = make_engine(settings)
    scorer = build_scorer(settings, load_artifact(small_model))
    version_a = scorer.model_version
    policy = PolicyPickup(PolicyStore(db), scorer.policy, scorer)
    model = ModelPickup(db, settings, scorer, policy)
    live = LiveUpdates([policy, model], poll_s=1e-9)
    live.at_batch_boundary(force=True)
    assert scorer.model_version == version_a  # no champion: model_path stays in use
    caplog.set_level(logging.INFO, "payscore.stream.live")

    # A usable champion is swapped in, with its own thresholds.
    path_b, version_b = variant(small_model, tmp_path / "b", variant="b")
    registry.register(db, path_b, "ana")
    registry.promote(db, version_b, "ana")
    live.at_batch_boundary()
    assert scorer.model_version == version_b
    assert scorer.policy.thresholds == policy.base.thresholds
    assert scorer.policy.thresholds.review == pytest.approx(
        load_artifact(path_b).metadata["thresholds"]["review"]
    )

    # A file changed after promotion: refused with one line, B stays.
    path_c, version_c = variant(small_model, tmp_path / "c", variant="c")
    registry.register(db, path_c, "ana")
    registry.promote(db, version_c, "ana")
    Path(path_c).write_bytes(Path(path_c).read_bytes() + b"tampered")
    caplog.clear()
    live.at_batch_boundary()
    live.at_batch_boundary()  # the same refused version is not tried (or logged) again
    assert scorer.model_version == version_b
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 1 and f"model version {version_c} refused" in refused[0], refused

    # A model reading a feature the running engine does not compute: refused, B stays.
    a = load_artifact(small_model)
    names = [*a.feature_names[:-1], "customer_nb_tx_86400s"]
    d = ModelArtifact(a.estimator, names, {**a.metadata, "variant": "d"})
    save_artifact(d, tmp_path / "d.joblib")
    registry.register(db, tmp_path / "d.joblib", "ana")
    registry.promote(db, d.version, "ana")
    caplog.clear()
    live.at_batch_boundary()
    assert scorer.model_version == version_b
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 1 and "customer_nb_tx_86400s" in refused[0], refused

    # Once the consumer runs, the load happens on a thread: batches go on under B meanwhile,
    # and a later boundary swaps the checked model in.
    model.background = True
    path_e, version_e = variant(small_model, tmp_path / "e", variant="e")
    registry.register(db, path_e, "ana")
    registry.promote(db, version_e, "ana")
    live.at_batch_boundary()
    assert scorer.model_version == version_b  # the boundary did not wait for the load
    assert wait_until(lambda: live.at_batch_boundary() or scorer.model_version == version_e, 60)

    # The database away: one line, the model in use stays; back, the pickup goes on.
    nowhere = make_url(db_url).set(host="127.0.0.1", port=9)  # nothing listens on port 9
    away = make_engine(Settings(database_url=nowhere.render_as_string(hide_password=False)))
    down = ModelPickup(away, settings, scorer, policy)
    down_live = LiveUpdates([down], poll_s=1e-9)
    caplog.clear()
    down_live.at_batch_boundary()
    down_live.at_batch_boundary()
    assert scorer.model_version == version_e
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cannot read the model" in lines[0], lines
    away.dispose()
    db.dispose()
