"""Scaling out does not change decisions: 1 and 3 consumers in one group, and a backtest.

The producer keys payments by card, so a terminal's payments come through every partition and,
with several consumers, through several processes. Each run must store, for every payment, the
score and status that ``payscore score`` gives the same payments in one process.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from payscore.core.schema import payment_to_json
from tests.integration.conftest import (
    consume_cmd,
    db_rows,
    expected_decisions,
    keyed,
    payments_from,
    produce,
)

pytestmark = pytest.mark.integration

#: The stream is sent a few days of event time at a time, each read before the next (a live
#: stream): partitions then stay within the label delay of each other, as the guarantee asks.
CHUNK_DAYS = 4
SETTLE_S = 180


def _terminal_partitions(db_url: str) -> dict[str, set[int]]:
    from sqlalchemy import create_engine, select

    from payscore.store.schema import scored_transactions

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = scored_transactions.c
            pairs = conn.execute(select(c.terminal_id, c.kafka_partition)).all()
    finally:
        engine.dispose()
    out: dict[str, set[int]] = defaultdict(set)
    for terminal, partition in pairs:
        out[terminal].add(partition)
    return out


def _backtest(env: dict[str, str], payments, model: str, tmp: Path) -> dict[str, tuple[str, str]]:
    """``payscore score`` over the same payments: transaction -> (score text, status)."""
    source, output = tmp / "payments.jsonl", tmp / "scored.csv"
    source.write_bytes(b"".join(payment_to_json(p) + b"\n" for p in payments))
    command = consume_cmd()[:-1] + [
        "score",
        "--input",
        str(source),
        "--output",
        str(output),
        "--model",
        model,
        "--no-explain",
    ]
    done = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    with open(output, newline="", encoding="utf-8") as f:
        return {r["transaction_id"]: (r["score"], r["status"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("consumers", [1, 3])
def test_consumers_in_one_group_decide_as_the_backtest_does(
    consumers, consume_runner, kafka_bootstrap, topic, db_url, small_world, small_model, tmp_path
):
    """3 partitions, 1 or 3 consumers: every stored score and status equals the backtest's
    (and the in-process Scorer's to rounding), terminal features included."""
    payments = payments_from(small_world, 4, 3600)  # about 15 days: the delayed windows fill
    first_day = payments[0].event_time.timestamp() // 86_400
    chunks: dict[int, list] = defaultdict(list)
    for p in payments:
        chunks[int(p.event_time.timestamp() // 86_400 - first_day) // CHUNK_DAYS].append(p)
    procs = [
        consume_runner.start("--batch-size", "100", "--max-wait-ms", "100")
        for _ in range(consumers)
    ]
    logs = [tmp_path / f"consume-{i}.log" for i in range(consumers)]

    def joined() -> bool:
        return all("positioned" in log.read_text(errors="replace") for log in logs)

    assert consume_runner.wait_until(procs[0], joined, SETTLE_S), consume_runner.logs()
    sent = 0
    for key in sorted(chunks):
        produce(kafka_bootstrap, topic, keyed(chunks[key]))
        sent += len(chunks[key])
        assert consume_runner.wait_until(
            procs[0], lambda n=sent: len(db_rows(db_url)["decisions"]) >= n, SETTLE_S
        ), consume_runner.logs()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=120) == 0, consume_runner.logs()

    rows = db_rows(db_url)
    stored = {tx: (score, status) for tx, status, score, _, _ in rows["decisions"]}
    assert len(stored) == len(rows["decisions"]) == len(payments)
    assert not rows["duplicates"] and not rows["dead_letters"]
    shared = [t for t, parts in _terminal_partitions(db_url).items() if len(parts) > 1]
    assert len(shared) > 20  # terminals shared across partitions (and consumers)
    if consumers > 1:  # every consumer decided part of the stream
        for log in logs:
            assert "positioned" in log.read_text(errors="replace")

    exact = expected_decisions(small_model, payments)
    backtest = _backtest(consume_runner.env, payments, small_model, tmp_path)
    # Scores agree to rounding: the model multiplies a batch's rows at once in the backtest and
    # one payment's in the consumer, which moves the last bits; a feature that differed by one
    # payment would move the score by far more than 1e-9 of itself.
    differ = [
        tx
        for tx, (score, status) in stored.items()
        if status != exact[tx].status
        or not math.isclose(score, exact[tx].score, rel_tol=1e-9, abs_tol=1e-12)
        or (status, abs(score - float(backtest[tx][0])) <= 5.0001e-7) != (backtest[tx][1], True)
    ]
    assert not differ, json.dumps(
        {tx: [stored[tx], exact[tx].score, backtest[tx]] for tx in differ[:5]}
    )
    # The stream reaches the delayed terminal windows, and the thresholds are crossed.
    from payscore.core.features import FeatureEngine

    engine = FeatureEngine()
    delayed = engine.transform(payments)[:, engine.feature_names.index("terminal_nb_tx_7day")]
    assert (delayed > 0).mean() > 0.3
    assert len({status for _, status in stored.values()}) > 1
