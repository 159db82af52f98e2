"""``payscore consume`` against real Kafka and MariaDB with a model that has a drift reference:
the writer process counts every decision once into ``feature_histograms``, re-sent messages
(duplicates) add nothing, and the score's counts match the stored scores binned again."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from payscore.core import training
from payscore.core.drift import SCORE, Reference
from payscore.core.model import save_artifact
from payscore.core.simulator import write_csv
from payscore.store.drift import BIN_COLUMNS
from payscore.store.schema import feature_histograms, scored_transactions
from tests.integration.conftest import keyed, payments_from, produce

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def referenced_model(small_world: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model trained by ``payscore train``'s path on the small world's first 40 days."""
    folder = Path(tmp_path_factory.mktemp("drift-model"))
    world = small_world[(small_world["TX_TIME_DAYS"] < 40) & (small_world["TX_AMOUNT"] > 0)]
    write_csv(world, folder / "p.csv")
    artifact, _ = training.train_on_file(training.read_history(folder / "p.csv"))
    save_artifact(artifact, folder / "model.joblib")
    return str(folder / "model.joblib")


def test_consume_counts_each_decision_once(
    consume_runner: Any,
    kafka_bootstrap: str,
    new_topic: Any,
    db_url: str,
    small_world: Any,
    referenced_model: str,
) -> None:
    topic = new_topic(1)
    consume_runner.env.update(
        {"PAYSCORE_INPUT_TOPIC": topic, "PAYSCORE_MODEL_PATH": referenced_model}
    )
    payments = payments_from(small_world, 42, 900)
    produce(kafka_bootstrap, topic, keyed(payments) + keyed(payments[:50]))  # 50 re-sent
    code = consume_runner.run("--batch-size", "120", "--max-wait-ms", "100", "--idle-exit", "4")
    assert code == 0, consume_runner.logs()

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            st = scored_transactions.c
            stored = conn.execute(select(st.model_version, st.score)).all()
            counted = conn.execute(select(feature_histograms)).all()
    finally:
        engine.dispose()
    assert len(stored) == len(payments)
    (version,) = {v for v, _ in stored}
    sidecar = json.loads(Path(f"{referenced_model}.json").read_text())
    reference = Reference.from_metadata(sidecar["metadata"])
    assert reference is not None
    totals: dict[str, Counter[int]] = {}
    for row in counted:
        m = row._mapping
        assert m["model_version"] == version
        bins = totals.setdefault(m["feature"], Counter())
        for i, c in enumerate(BIN_COLUMNS):
            if m[c]:
                bins[i] += int(m[c])
    assert set(totals) == {s.name for s in reference.series}
    assert all(sum(b.values()) == len(payments) for b in totals.values())
    edges = list(reference.get(SCORE).edges)  # type: ignore[union-attr]
    assert totals[SCORE] == Counter(bisect_left(edges, float(s)) for _, s in stored)
