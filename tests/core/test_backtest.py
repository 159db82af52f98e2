"""Backtest input: CSV and JSON lines, rejected rows with line numbers, order and labels."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from payscore.core import backtest, features, paymentfile
from payscore.core.decision import Decision
from payscore.core.model import ModelArtifact
from payscore.core.schema import MAX_MESSAGE_BYTES, Payment
from payscore.core.scoring import Scorer
from payscore.errors import InputError
from tests.core.test_scoring import STOCK

HEADER = "transaction_id,customer_id,terminal_id,amount,currency,event_time,channel,is_fraud\n"


def row(tx: str, when: str = "2018-04-01T10:00:00+00:00", amount: str = "10.00", fraud="0"):
    return f"{tx},c1,t1,{amount},EUR,{when},,{fraud}\n"


def test_csv_rows_validated_with_line_numbers(tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_text(
        "\ufeff"  # a spreadsheet's byte-order mark
        + HEADER
        + row("a")
        + row("b", amount="-1")
        + row("c", when="2018-04-01 10:00")
        + row("a")
        + row("d", fraud="yes")
        + row("e", fraud="??"),
        encoding="utf-8",
    )
    data = backtest.read_input(src)
    assert [p.transaction_id for p in data.payments] == ["a", "d"]
    assert data.payments[0].channel is None  # blank optional column -> null
    assert [(r.line, r.kind, r.field) for r in data.rejected] == [
        (3, "schema", "amount"),
        (4, "schema", "event_time"),
        (5, "duplicate", "transaction_id"),
        (7, "schema", "is_fraud"),  # an unreadable label is a bad row, as in train and produce
    ]
    assert data.labels == {"a": False, "d": True}


def test_csv_invalid_utf8_row_is_rejected_not_fatal(tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_bytes(
        HEADER.encode() + b"caf\xe9,c1,t1,1.00,EUR,2018-04-01T00:00:00Z,,0\n" + row("ok").encode()
    )
    data = backtest.read_input(src)
    assert [p.transaction_id for p in data.payments] == ["ok"]
    assert data.rejected[0].kind == "encoding" and data.rejected[0].line == 2


def test_csv_needs_the_payment_columns(tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_text("id,amount\n1,2\n")
    with pytest.raises(InputError, match="customer_id"):
        backtest.read_input(src)


def test_jsonl_rows(tmp_path: Path) -> None:
    good = {
        "transaction_id": "j1",
        "customer_id": "c",
        "terminal_id": "t",
        "amount": 5,
        "currency": "EUR",
        "event_time": "2018-04-01T00:00:00Z",
        "is_fraud": True,
    }
    lines = [
        json.dumps(good),
        "",
        "not json",
        "x" * (MAX_MESSAGE_BYTES * 3),
        json.dumps({**good, "transaction_id": "j2", "is_fraud": 0}),
    ]
    src = tmp_path / "p.data"  # no telling suffix: sniffed from the first byte
    src.write_text("\n".join(lines) + "\n")
    data = backtest.read_input(src)
    assert [p.transaction_id for p in data.payments] == ["j1", "j2"]
    assert [(r.line, r.kind) for r in data.rejected] == [(3, "json"), (4, "too_large")]
    assert data.labels == {"j1": True, "j2": False}


def test_input_bounds(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        backtest.read_input(tmp_path / "nope.csv")
    big = tmp_path / "big.csv"
    big.write_text(HEADER + row("a") * 10)
    with pytest.raises(InputError, match="limit"):
        backtest.read_input(big, max_bytes=100)


def test_event_order_is_stable(tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_text(
        HEADER
        + row("late", "2018-04-02T00:00:00+00:00")
        + row("tie1", "2018-04-01T00:00:00+00:00")
        + row("early", "2018-04-01T01:00:00+03:00")  # 2018-03-31T22:00Z
        + row("tie2", "2018-04-01T00:00:00+00:00")
    )
    ordered = backtest.event_order(backtest.read_input(src).payments)
    assert [p.transaction_id for p in ordered] == ["early", "tie1", "tie2", "late"]


def test_labels_file(tmp_path: Path) -> None:
    src = tmp_path / "labels.csv"
    src.write_text("transaction_id,is_fraud\na,1\nb,0\nc,true\n")
    assert backtest.read_labels(src) == {"a": True, "b": False, "c": True}
    src.write_text("transaction_id,is_fraud\na,2\n")
    with pytest.raises(InputError, match="line 2"):
        backtest.read_labels(src)


def test_status_confusion_and_output(tmp_path: Path) -> None:
    decisions = [
        Decision("a", 0.9, "DECLINED", ("MODEL_VERY_HIGH_RISK",), "v"),
        Decision("b", 0.6, "REVIEW", ("MODEL_HIGH_RISK", "AMOUNT_HIGH"), "v"),
        Decision("c", 0.1, "APPROVED", (), "v"),
        Decision("d", 0.1, "APPROVED", (), "v"),
    ]
    confusion = backtest.status_confusion(decisions, {"a": True, "b": False, "c": True})
    assert confusion == {
        "APPROVED": {True: 1, False: 0},
        "REVIEW": {True: 0, False: 1},
        "DECLINED": {True: 1, False: 0},
    }
    out = tmp_path / "out.csv"
    assert backtest.write_decisions(out, decisions) == 4
    text = out.read_text().splitlines()
    assert text[0] == "transaction_id,score,status,reason_codes,explanation"
    assert text[2] == 'b,0.600000,REVIEW,"MODEL_HIGH_RISK,AMOUNT_HIGH",'
    assert text[3] == "c,0.100000,APPROVED,,"


@pytest.mark.parametrize(
    "value, flag",
    [
        ("1", True),
        ("0", False),
        (" TRUE ", True),
        ("no", False),
        (1, True),
        (False, False),
        ("", None),
        ("2", None),
        (None, None),
        (2, None),
    ],
)
def test_parse_label(value: object, flag: bool | None) -> None:
    assert paymentfile.parse_label(value) is flag


def _dummy_scorer() -> Scorer:
    """A scorer whose model ignores its features: these tests look at the engine's labels."""
    from sklearn.dummy import DummyClassifier

    names = ("amount", "terminal_risk_7day")
    estimator = DummyClassifier(strategy="prior").fit(np.zeros((2, 2)), [0, 1])
    artifact = ModelArtifact(estimator, names, {"thresholds": {"review": 0.5, "decline": 0.9}})
    return Scorer.from_settings_values(artifact, None, **STOCK)  # type: ignore[arg-type]


def _known_frauds(scorer: Scorer) -> int:
    terminals = scorer.engine.snapshot()["terminals"].values()
    return sum(known is not None for term in terminals for known in term[4])


def test_labels_are_not_lost_to_the_engines_cap_on_pending_labels(monkeypatch) -> None:
    # The engine keeps at most MAX_PENDING_LABELS labels of payments it has not seen; a cap of
    # 5 stands in for the real 2,000,000. Queuing all 40 labels before scoring kept only 5.
    monkeypatch.setattr(features, "MAX_PENDING_LABELS", 5)
    start = datetime(2018, 4, 1, tzinfo=timezone.utc)
    payments = [
        Payment(
            transaction_id=f"p{i}",
            customer_id=f"c{i % 7}",
            terminal_id="t1",
            amount=Decimal("10.00"),
            currency="EUR",
            event_time=start + timedelta(hours=i),
        )
        for i in range(40)
    ]
    labels = {p.transaction_id: i % 2 == 0 for i, p in enumerate(payments)}
    scorer = _dummy_scorer()
    calls: list[tuple[str, int, int | None]] = []
    decisions = backtest.run_backtest(
        scorer, payments, batch_size=4, labels=labels, progress=lambda *a: calls.append(a)
    )
    assert len(decisions) == 40
    assert _known_frauds(scorer) == 20
    assert calls == [("scoring", n, 40) for n in range(4, 41, 4)]


@pytest.mark.parametrize(
    ("period", "dates"),
    [
        (
            {"train": ["2018-06-20", "2018-07-31"], "validation": ["2018-08-01", "2018-08-07"]},
            ("2018-06-20", "2018-08-07"),
        ),
        (  # trained on a file: times, not dates
            {"train": ["2018-04-01T00:07:56+00:00", "2018-04-28T23:24:42+00:00"], "validation": []},
            ("2018-04-01", "2018-04-28"),
        ),
        ({}, None),
        ({"train": "soon"}, None),
    ],
)
def test_training_dates_from_metadata(period: dict, dates: tuple[str, str] | None) -> None:
    found = backtest.training_dates({"training_period": period})
    assert found == (dates and tuple(date.fromisoformat(d) for d in dates))
