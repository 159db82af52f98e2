"""The consumer feeds its features only the labels that count (an analyst's verdict wins)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine

from payscore.pipeline import Pipeline, RawMessage
from payscore.store.labels import record_analyst_label
from payscore.store.writer import DecisionWriter
from tests.store.test_labels import counting, db

__all__ = ["db"]


class _Engine:
    """Records the labels the pipeline feeds to the features."""

    def __init__(self) -> None:
        self.fed: list[tuple[str, bool]] = []

    def add_labels(self, labels: Any) -> None:
        self.fed.extend((lb.transaction_id, lb.is_fraud) for lb in labels)


def test_the_consumer_does_not_feed_a_label_an_analyst_overrules(db: Engine) -> None:
    record_analyst_label(db, "tx1", False, "erin")
    features = _Engine()
    pipeline = Pipeline(
        SimpleNamespace(engine=features), DecisionWriter(db), "g", labels_topic="labels"
    )
    known = "2030-01-09T00:00:00+00:00"
    messages = [
        RawMessage(
            "labels",
            0,
            i,
            None,
            f'{{"transaction_id":"{tx}","is_fraud":true,"known_at":"{known}"}}'.encode(),
        )
        for i, tx in enumerate(["tx1", "tx2"])
    ]
    pipeline.process(messages)
    assert features.fed == [("tx2", True)]
    assert counting(db) == [("tx1", False, "analyst", "erin"), ("tx2", True, "stream", None)]
