"""Shared pieces of the consumer integration tests: a small model, payments, subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from payscore.core.schema import Payment, payment_to_json

CONSUME_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def small_world() -> Any:
    """A small slice of the simulated world (few customers, so velocity rules fire)."""
    from payscore.core import simulator

    return simulator.generate_world(n_customers=150, n_terminals=300, n_days=50)


@pytest.fixture(scope="session")
def small_model(small_world: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A quickly trained model artifact (logistic regression over the serving features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from payscore.core import training
    from payscore.core.model import ModelArtifact, save_artifact

    history = training.History.from_world(small_world)
    engine, X = training.compute_features(history)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    estimator.fit(X, history.labels)
    scores = estimator.predict_proba(X)[:, 1]
    artifact = ModelArtifact(
        estimator,
        engine.feature_names,
        {
            "trained_at": datetime.now(timezone.utc).isoformat(),
            "thresholds": {
                "review": float(np.quantile(scores, 0.97)),
                "decline": float(np.quantile(scores, 0.995)),
            },
            "label_delay_days": 7,
            "model_type": "logistic_regression",
        },
    )
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save_artifact(artifact, path)
    return str(path)


def payments_from(world: Any, start_day: int, count: int) -> list[Payment]:
    from payscore.core import simulator

    days = world["TX_TIME_DAYS"].to_numpy()
    lo = int(np.searchsorted(days, start_day))
    return simulator.to_payments(world.iloc[lo : lo + count])


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def keyed(payments: Sequence[Payment]) -> list[tuple[bytes | None, bytes]]:
    return [(p.customer_id.encode(), payment_to_json(p)) for p in payments]


def expected_decisions(model_path: str, payments: Sequence[Payment]) -> dict[str, Any]:
    """What an uninterrupted in-process Scorer decides for these payments, in this order."""
    from payscore.cli.consume import build_scorer
    from payscore.config import Settings
    from payscore.core.model import load_artifact

    scorer = build_scorer(Settings(), load_artifact(model_path))
    out = {}
    for lo in range(0, len(payments), 500):
        for d in scorer.score_batch(payments[lo : lo + 500]):
            out[d.transaction_id] = d
    return out


def consume_cmd(*args: str) -> list[str]:
    exe = shutil.which("payscore")
    base = [exe] if exe else [sys.executable, "-c", "from payscore.cli.app import main; main()"]
    return [*base, "consume", *args]


class ConsumeRunner:
    """Starts ``payscore consume`` subprocesses with a shared environment."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"consume-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            consume_cmd(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = CONSUME_TIMEOUT_S) -> int:
        proc = self.start(*args)
        return proc.wait(timeout=timeout)

    def wait_until(
        self, proc: subprocess.Popen[bytes], predicate: Callable[[], bool], timeout: float
    ) -> bool:
        """``wait_until`` that fails at once, with the logs, if ``proc`` exits first."""
        return wait_until(predicate, timeout, alive=proc, logs=self.logs)

    def logs(self, tail: int | None = 3000) -> str:
        """Each process's log, the last ``tail`` characters of each (for a failure message);
        ``tail=None`` for the whole text, which is what an assertion on the content reads."""
        texts = (p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))
        return "\n".join(t if tail is None else t[-tail:] for t in texts)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def consume_runner(
    tmp_path: Path,
    db_url: str,
    kafka_bootstrap: str,
    topic: str,
    group_id: str,
    new_topic: Callable[..., str],
    small_model: str,
    payscore_env: Callable[..., dict[str, str]],
) -> Any:
    """A runner wired to this test's database, topic, group, dead-letter topic and model."""
    env = payscore_env(
        database_url=db_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        input_topic=topic,
        consumer_group=group_id,
        dlq_topic=new_topic(1, prefix="ps-dlq"),
        publish_decisions=False,
        model_path=small_model,
        log_interval_seconds=2,
        labels_topic="",
    )
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.setdefault("PAYSCORE_CACHE_DIR", str(tmp_path / "cache"))
    runner = ConsumeRunner(env, tmp_path)
    yield runner
    runner.cleanup()


def db_rows(db_url: str) -> dict[str, Any]:
    """Everything the accounting tests compare, read straight from the database."""
    from sqlalchemy import create_engine, select

    from payscore.store.schema import dead_letters, duplicates, scored_transactions

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = scored_transactions.c
            decisions = conn.execute(
                select(c.transaction_id, c.status, c.score, c.kafka_partition, c.kafka_offset)
            ).all()
            dups = conn.execute(
                select(duplicates.c.source_partition, duplicates.c.source_offset)
            ).all()
            dead = conn.execute(
                select(
                    dead_letters.c.source_partition,
                    dead_letters.c.source_offset,
                    dead_letters.c.error_kind,
                )
            ).all()
    finally:
        engine.dispose()
    return {"decisions": decisions, "duplicates": dups, "dead_letters": dead}


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    step: float = 0.2,
    *,
    alive: subprocess.Popen[bytes] | None = None,
    logs: Callable[[], str] | None = None,
) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False).

    With ``alive``, a process the wait depends on: if it exits first and the predicate still
    does not hold, the test fails at once with its exit code and ``logs()``, instead of
    waiting out the timeout and failing later on a consequence.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and alive.poll() is not None:
            if predicate():
                return True
            log = logs() if logs is not None else ""
            pytest.fail(
                f"process {alive.pid} exited with code {alive.returncode} while waited on:\n{log}",
                pytrace=False,
            )
        time.sleep(step)
    return False
