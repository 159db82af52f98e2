"""``payscore rules test``: the what-if numbers against an independent count on a stored world.

The world is stored as the consumer would have left it: decisions (with the model's score)
and labels, in SQLite. The count here reads only those stored rows and does plain arithmetic:
the stock rules (amount above 200 or 10,000, more than 5 payments by a customer in an hour),
the stored score against the thresholds (both 1.0), and the candidate rule or threshold.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.cli.whatif import whatif
from payscore.config import Settings
from payscore.core.backtest import run_backtest
from payscore.core.model import save_artifact
from payscore.core.policy import parse_rule
from payscore.pipeline import build_scorer
from payscore.store.engine import make_engine
from payscore.store.initdb import create_schema
from payscore.store.policy import PolicyStore
from payscore.store.schema import fraud_labels, scored_transactions
from tests.core.test_scoring import tiny_world, train_tiny_model

DAYS = 5
CANDIDATE = 100.0  # the rule tried: amount above this -> REVIEW
STOCK_REVIEW = 200.0


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("whatif")
    settings = store_world(f"sqlite:///{folder / 'w.db'}", folder)
    return {"settings": settings, "folder": folder}


def store_world(url: str, folder: Path) -> Settings:
    """The tiny world's decisions and half its labels stored in the (empty) schema at ``url``,
    its model saved in ``folder``: the settings the numbers here assume."""
    payments, labels = tiny_world()
    payments = sorted(payments, key=lambda p: p.event_time)
    model = folder / "model.joblib"
    artifact = train_tiny_model(payments, labels)
    save_artifact(artifact, model)
    settings = Settings(
        database_url=url,
        model_path=str(model),
        review_threshold=1.0,
        decline_threshold=1.0,
        amount_review_limit=STOCK_REVIEW,
    )
    half = {p.transaction_id: labels[p.transaction_id] for p in payments[::2]}
    # The decisions as the consumer stored them: its scores, labels known a week later.
    decided = run_backtest(build_scorer(settings, artifact), payments, 500, half)
    rows = [
        {
            "transaction_id": p.transaction_id,
            "customer_id": p.customer_id,
            "terminal_id": p.terminal_id,
            "amount": p.amount,
            "currency": p.currency,
            "event_time": p.event_time.replace(tzinfo=None),
            "received_at": p.event_time.replace(tzinfo=None),
            "scored_at": p.event_time.replace(tzinfo=None),
            "score": d.score,
            "prediction": 0,
            "status": d.status,
            "reason_codes": "",
            "model_version": "m",
        }
        for p, d in zip(payments, decided, strict=True)
    ]
    known = [
        {
            "transaction_id": tx,
            "is_fraud": fraud,
            "source": "stream",
            "known_at": (by_id.event_time + timedelta(days=7)).replace(tzinfo=None),
        }
        for by_id in payments
        for tx, fraud in [(by_id.transaction_id, half.get(by_id.transaction_id))]
        if fraud is not None
    ]
    engine = make_engine(settings)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(scored_transactions), rows)
        conn.execute(insert(fraud_labels), known)
    engine.dispose()
    return settings


def independent(stored: dict[str, Any], rule: Any = None, review: float = 1.0) -> dict:
    """Per day: payments, flagged, fraud among them, extra review, overlap, from stored rows."""
    engine = make_engine(stored["settings"])
    c, f = scored_transactions.c, fraud_labels.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.transaction_id, c.customer_id, c.amount, c.event_time, c.score).order_by(
                c.event_time, c.id
            )
        ).all()
        fraud = {
            tx for tx, is_fraud in conn.execute(select(f.transaction_id, f.is_fraud)) if is_fraud
        }
    engine.dispose()
    first = rows[-1].event_time.date() - timedelta(days=DAYS - 1)
    recent: dict[str, deque] = {}
    out: dict[Any, list[int]] = {}
    for tx, customer, amount, at, score in rows:
        t = at.timestamp()
        window = recent.setdefault(customer, deque())
        window.append(t)
        while window[0] <= t - 3600:
            window.popleft()
        if at.date() < first:
            continue

        declined = float(amount) > 10_000 or score >= 1.0
        stock = float(amount) > STOCK_REVIEW or len(window) > 5
        fires = rule(float(amount)) if rule else score >= review
        now = "DECLINED" if declined else ("REVIEW" if stock else "APPROVED")
        flags = stock or score >= review or bool(rule and fires)
        then = "DECLINED" if declined else ("REVIEW" if flags else "APPROVED")
        day = out.setdefault(at.date(), [0, 0, 0, 0, 0])
        day[0] += 1
        day[3] += (then == "REVIEW") - (now == "REVIEW")
        if fires:
            day[1] += 1
            day[2] += tx in fraud
            day[4] += now != "APPROVED"
    return out


def as_lists(report: Any) -> dict[Any, list[int]]:
    return {
        day: [c.payments, c.flagged, c.flagged_fraud, c.extra_review, c.overlap]
        for day, c in report.days.items()
    }


def test_a_rule_file_matches_the_independent_count(stored: dict[str, Any]) -> None:
    rule = stored["folder"] / "small.toml"
    rule.write_text(
        f'code = "SMALL_AMOUNT"\nkind = "amount_above"\naction = "REVIEW"\n'
        f"[params]\nlimit = {CANDIDATE}\n"
    )
    report, what, first, last, _ = whatif(stored["settings"], str(rule), None, None, DAYS)
    expected = independent(stored, rule=lambda amount: amount > CANDIDATE)
    assert (last - first).days == DAYS - 1 and what == "rule SMALL_AMOUNT"
    assert as_lists(report) == expected
    totals = [sum(day[i] for day in expected.values()) for i in range(5)]
    t = report.total
    assert [t.payments, t.flagged, t.flagged_fraud, t.extra_review, t.overlap] == totals
    # The world is one where each number is informative, not zero.
    assert t.flagged > t.overlap > 0 and t.flagged_fraud > 0 and t.extra_review > 0


def test_a_stored_rule_by_id_is_tried_against_the_policy_without_it(
    stored: dict[str, Any],
) -> None:
    store = PolicyStore(make_engine(stored["settings"]))
    spec = parse_rule(
        {
            "code": "SMALL_AMOUNT",
            "kind": "compare",
            "action": "REVIEW",
            "params": {"feature": "amount", "op": ">", "value": CANDIDATE},
        }
    )
    stored_rule, _ = store.add_rule(spec, "ann")
    store.set_enabled("SMALL_AMOUNT", False, "ann")  # tried before it is switched on
    store.engine.dispose()
    report, *_ = whatif(stored["settings"], None, str(stored_rule.id), None, DAYS)
    assert as_lists(report) == independent(stored, rule=lambda amount: amount > CANDIDATE)


def test_a_review_threshold_matches_the_independent_count(stored: dict[str, Any]) -> None:
    report, what, *_ = whatif(stored["settings"], None, None, 0.3, DAYS)
    assert what == "review threshold 0.3"
    assert as_lists(report) == independent(stored, review=0.3)
    assert report.total.flagged > 0 and report.total.extra_review > 0


def test_the_command_prints_a_table_and_refuses_two_subjects(stored: dict[str, Any]) -> None:
    s = stored["settings"]
    env = {
        "PAYSCORE_DATABASE_URL": s.database_url,
        "PAYSCORE_MODEL_PATH": s.model_path,
        "PAYSCORE_REVIEW_THRESHOLD": "1.0",
        "PAYSCORE_DECLINE_THRESHOLD": "1.0",
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(
        app, ["rules", "test", "--review-threshold", "0.5", "--days", str(DAYS)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "what-if: review threshold 0.5" in result.output and "total" in result.output
    both = CliRunner().invoke(
        app, ["rules", "test", "--id", "1", "--review-threshold", "0.5"], env=env
    )
    assert both.exit_code == 1 and "exactly one of" in both.output
