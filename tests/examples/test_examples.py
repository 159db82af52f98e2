"""Every file in examples/ runs as a user would run it, and does what its README says."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from payscore.config import Settings, load_settings
from payscore.core.schema import Payment, parse_payment, payment_to_json
from payscore.store.engine import database_url
from tests.conftest import make_payscore_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SAMPLE = EXAMPLES / "data" / "payments.csv"
RUN_TIMEOUT_S = 600  # a guard against a hung child, not a speed requirement

# Each file in examples/ and the test that exercises it. A new example needs a line here,
# and the line needs a test (test_every_example_file_is_exercised).
EXERCISED_BY = {
    "README.md": "test_examples_readme_shows_every_example_and_runnable_commands",
    "payscore.toml": "test_toml_loads_and_sets_what_it_says",
    "produce_payments.py": "test_producer_sends_documented_payments_to_a_real_broker",
    "backtest_thresholds.py": "test_backtest_trains_and_compares_two_thresholds",
    "custom_rule.py": "test_custom_rule_fires_on_night_payments_above_its_limit",
    "data/payments.csv": "test_sample_csv_is_small_and_every_row_is_a_valid_payment",
    "prometheus/prometheus.yml": "test_prometheus_config_passes_promtool",
}


def _env(**settings: object) -> dict[str, str]:
    """A user's shell: no inherited PAYSCORE_* settings, this interpreter's scripts on PATH."""
    env = make_payscore_env(**settings)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"  # rich wraps at 80 columns when not on a terminal
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{output[-4000:]}"
    return proc.stdout


def test_every_example_file_is_exercised() -> None:
    files = {
        p.relative_to(EXAMPLES).as_posix()
        for p in EXAMPLES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert files == set(EXERCISED_BY), "examples/ and EXERCISED_BY differ: add a test"
    for name, test in EXERCISED_BY.items():
        assert callable(globals().get(test)), f"{name}: no test named {test}"


def test_examples_readme_shows_every_example_and_runnable_commands() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in EXERCISED_BY:
        if name != "README.md":
            assert f"({name})" in readme, f"examples/README.md does not link {name}"
    commands = re.findall(r"^python (examples/\S+)", readme, flags=re.M)
    assert commands, "examples/README.md shows no command"
    for script in commands:
        assert (ROOT / script).is_file(), f"examples/README.md runs a missing {script}"
    for config in re.findall(r"--config (\S+)", readme):
        assert (ROOT / config).is_file(), f"examples/README.md names a missing {config}"


# ----------------------------------------------------------------------------- payscore.toml


def _toml_settings(text: str) -> dict[str, object]:
    data = tomllib.loads(text)
    return data.get("payscore", data)


def test_toml_loads_and_sets_what_it_says(tmp_path: Path) -> None:
    path = EXAMPLES / "payscore.toml"
    text = path.read_text(encoding="utf-8")
    in_file = _toml_settings(text)
    assert not [k for k in in_file if "password" in k], "secrets belong in the environment"
    secrets = {
        "PAYSCORE_DATABASE_PASSWORD": "db-s3cret",
        "PAYSCORE_KAFKA_SASL_PASSWORD": "sasl-s3cret",
    }
    assert all(name in text for name in secrets), "the file must say where the secrets go"

    loaded = load_settings(path, environ=secrets)
    settings = loaded.settings
    for key, value in in_file.items():
        assert getattr(settings, key) == value, key
        assert loaded.sources[key] == f"file {path}", key
    assert settings.database_url.startswith("mysql://")
    url = database_url(settings)
    assert (url.username, url.password, url.host, url.port) == (
        "payscore",
        "db-s3cret",
        "mysql.internal",
        3306,
    )
    options = settings.kafka_options()
    assert options["sasl_plain_password"] == "sasl-s3cret"
    assert len(options["bootstrap_servers"]) == 3

    # The commented-out lines are real settings too: uncommented, they load.
    commented = re.findall(r"^# ([a-z_]+ = \S+)$", text, flags=re.M)
    assert commented, "expected the optional thresholds as comments"
    uncommented = tmp_path / "payscore.toml"
    uncommented.write_text(text + "\n".join(commented) + "\n", encoding="utf-8")
    extra = _toml_settings("\n".join(commented))
    with_extra = load_settings(uncommented, environ={}).settings
    for key, value in extra.items():
        assert key in Settings.model_fields
        assert getattr(with_extra, key) == value

    # As a user checks it: `payscore --config examples/payscore.toml config`.
    out = _run(
        ["payscore", "--config", "examples/payscore.toml", "config"],
        _env(database_password="db-s3cret"),
    )
    assert "db-s3cret" not in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 4}
    assert "file examples/payscore.toml" in rows["database_url"]
    assert "mysql.internal" in rows["database_url"]
    assert "env PAYSCORE_DATABASE_PASSWORD" in rows["database_password"]
    assert "********" in rows["database_password"]


# ------------------------------------------------------------------------ produce_payments.py


@pytest.mark.integration
def test_producer_sends_documented_payments_to_a_real_broker(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    from kafka import KafkaConsumer

    topic = new_topic(3)
    env = _env(kafka_bootstrap_servers=kafka_bootstrap, input_topic=topic)
    out = _run([sys.executable, "examples/produce_payments.py", "--count", "25"], env)
    assert f"sent 25 payments to topic {topic}" in out
    # Flags win over the variables: a second run names the topic on the command line.
    env["PAYSCORE_INPUT_TOPIC"] = "not-this-one"
    out = _run(
        [sys.executable, "examples/produce_payments.py", "--count", "5", "--topic", topic], env
    )
    assert f"sent 5 payments to topic {topic}" in out

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records = []
    deadline = time.monotonic() + 60
    try:
        while len(records) < 30 and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    assert len(records) == 30

    payments = [parse_payment(r.value) for r in records]
    bad = [p for p in payments if not isinstance(p, Payment)]
    assert not bad, f"the consumer would dead-letter these: {bad}"
    assert len({p.transaction_id for p in payments}) == 30, "transaction ids must be unique"
    for record, payment in zip(records, payments, strict=True):
        assert record.key == payment.customer_id.encode()
        # Exactly the canonical form of docs/messages.md: key order, amount text, UTC offset.
        assert record.value == payment_to_json(payment)


# ---------------------------------------------------------------------- data/payments.csv


def test_sample_csv_is_small_and_every_row_is_a_valid_payment() -> None:
    assert SAMPLE.stat().st_size < 1_000_000
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 10_000
    fields = list(Payment.model_fields)
    problems = []
    for line, row in enumerate(rows, start=2):
        message = json.dumps({k: row[k] for k in fields if row.get(k)}).encode()
        result = parse_payment(message)
        if not isinstance(result, Payment):
            problems.append(f"line {line}: {result.message}")
        elif row["is_fraud"] not in {"0", "1"}:
            problems.append(f"line {line}: is_fraud {row['is_fraud']!r}")
    assert not problems, problems[:5]
    assert len({r["transaction_id"] for r in rows}) == len(rows)
    frauds = sum(r["is_fraud"] == "1" for r in rows)
    assert 100 <= frauds < len(rows) // 20, "enough fraud to train on, and a realistic rate"


# ---------------------------------------------------------------------- backtest_thresholds.py


def _table_row(out: str, name: str) -> list[str]:
    lines = [line for line in out.splitlines() if re.match(rf"{re.escape(name)}\s+[0-9]", line)]
    assert len(lines) == 1, f"no single {name!r} row in:\n{out[-2000:]}"
    return lines[0][len(name) :].split()


@pytest.mark.slow
def test_backtest_trains_and_compares_two_thresholds(tmp_path: Path) -> None:
    from payscore.core.model import load_artifact

    work = tmp_path / "work"
    # The candidate comes from the environment of the second run only, not from the caller's.
    env = _env(review_threshold=0.5)
    out = _run(
        [sys.executable, str(EXAMPLES / "backtest_thresholds.py"), "--workdir", str(work)],
        env,
        cwd=tmp_path,
    )
    # payscore train printed its test metrics; payscore score ran twice.
    assert "AUC ROC" in out and "Card Precision@100" in out
    assert out.count("$ payscore score ") == 2

    artifact = load_artifact(work / "model.joblib")
    # The periods are UTC dates (training by dates); the file's times carry their offset.
    test_start = datetime.fromisoformat(artifact.metadata["training_period"]["test"][0])
    test_start = test_start.replace(tzinfo=test_start.tzinfo or timezone.utc)
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        held_out = {
            r["transaction_id"]: r["is_fraud"] == "1"
            for r in csv.DictReader(f)
            if datetime.fromisoformat(r["event_time"]) >= test_start
        }
    n_fraud = sum(held_out.values())
    assert f": {len(held_out):,}, {n_fraud} fraud" in out

    def stopped(name: str, threshold: float) -> tuple[int, int]:
        with (work / name).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 14_345  # every payment of the file, none rejected
        # The run used this review threshold (scores are written with 6 decimals).
        above = [r for r in rows if float(r["score"]) >= threshold + 1e-6]
        assert above and all(r["status"] != "APPROVED" for r in above), name
        hits = [r["transaction_id"] for r in rows if r["status"] != "APPROVED"]
        hits = [tx for tx in hits if tx in held_out]
        return len(hits), sum(held_out[tx] for tx in hits)

    review = artifact.metadata["thresholds"]["review"]
    for name, threshold, decisions in (
        ("model thresholds", review, "decisions-model.csv"),
        ("candidate", 0.01, "decisions-candidate.csv"),
    ):
        n_stopped, caught = stopped(decisions, threshold)
        row = _table_row(out, name)
        assert row == [
            f"{threshold:.4f}",
            f"{n_stopped:,}",
            f"{caught}/{n_fraud}",
            f"{n_stopped - caught:,}",
        ], name
    # A lower review threshold can only stop more payments, never fewer.
    assert review > 0.01
    candidate = stopped("decisions-candidate.csv", 0.01)
    assert candidate[0] > stopped("decisions-model.csv", review)[0]
    assert "candidate against model thresholds: +" in out


# ---------------------------------------------------------------------- prometheus/prometheus.yml


def test_prometheus_config_passes_promtool() -> None:
    """The scrape config is valid for Prometheus' own checker (installed with it by the bed)
    and scrapes the consumer's documented metrics port."""
    import shutil

    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run tests/bed/install.sh (it installs prometheus)"
    config = EXAMPLES / "prometheus" / "prometheus.yml"
    proc = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"consumer:9464"' in config.read_text(encoding="utf-8")
    assert "9464" in str(Settings.model_fields["metrics_port"].description)  # the same port


# ---------------------------------------------------------------------------- custom_rule.py


@pytest.mark.slow
def test_custom_rule_fires_on_night_payments_above_its_limit(tmp_path: Path) -> None:
    # An empty directory: no payscore.toml and no model, so the example trains on the sample.
    out = _run([sys.executable, str(EXAMPLES / "custom_rule.py")], _env(), cwd=tmp_path)
    assert "no model at models/payscore-model.joblib" in out
    assert "rules: VELOCITY_1H, AMOUNT_HIGH, AMOUNT_EXTREME, NIGHT_LARGE" in out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in {"night-large", "day-large", "night-small", "night-paris"}:
            tx, _score, stock_status, status, reasons = parts
            rows[tx] = (stock_status, status, reasons.split(","))
    assert set(rows) == {"night-large", "day-large", "night-small", "night-paris"}
    for tx in ("night-large", "night-paris"):
        stock_status, status, reasons = rows[tx]
        assert "NIGHT_LARGE" in reasons, tx
        assert status in {"REVIEW", "DECLINED"}, tx
    for tx in ("day-large", "night-small"):
        stock_status, status, reasons = rows[tx]
        assert "NIGHT_LARGE" not in reasons, tx
        assert status == stock_status, f"{tx}: the rule did not fire, the status must not move"
