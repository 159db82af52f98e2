"""``produce`` and ``replay-dlq`` metrics against the real broker: what the endpoint says
agrees with what the topics hold; ``--metrics-port`` serves while the command runs."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from payscore.config import Settings
from payscore.core.schema import payment_to_json
from payscore.stream.metrics import MetricsEndpoint, ProducerCollector, ReplayCollector
from payscore.stream.producer import ProduceOptions, ProduceStats, produce
from payscore.stream.replay import ReplayResult, parked_topic, replay_dead_letters
from payscore.stream.sources import SourceItem
from tests.bed._proc import free_ports
from tests.integration.conftest import payments_from, wait_until
from tests.integration.test_produce import payscore_cmd, read_all
from tests.integration.test_replay import _letter, _put_dead_letters

pytestmark = pytest.mark.integration


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a local test URL
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - a local test URL
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_produce_metrics_agree_with_the_topic(
    kafka_bootstrap: str, new_topic: Any, small_world: Any
) -> None:
    topic = new_topic(2)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    items = [SourceItem(p) for p in payments_from(small_world, 10, 120)]
    options = ProduceOptions(topic=topic, rate=0, bad_rate=0.1, duplicate_rate=0.05, seed=1)
    stats = ProduceStats()
    (port,) = free_ports(1)
    with MetricsEndpoint(ProducerCollector(stats), port, "127.0.0.1"):
        produce(settings, items, options, stats=stats)
        got = _scrape(port)
    records = read_all(kafka_bootstrap, topic)
    sent = {k[1][0][1]: v for k, v in got.items() if k[0] == "payscore_produce_sent_total"}
    assert sum(sent.values()) == len(records) == stats.sent
    assert sent["bad"] == 12 and sent["payment"] == 108 and sent["duplicate"] == stats.duplicates
    assert got[("payscore_produce_acknowledged_total", ())] == len(records)
    assert got[("payscore_produce_failed_total", ())] == 0
    assert got[("payscore_produce_send_seconds_count", ())] == len(records)


def test_produce_serves_metrics_while_it_runs(
    kafka_bootstrap: str, payscore_env: Any, tmp_path: Any, small_world: Any
) -> None:
    source = tmp_path / "payments.jsonl"
    payments = payments_from(small_world, 10, 150)
    source.write_bytes(b"".join(payment_to_json(p) + b"\n" for p in payments))
    topic = f"ps-produce-metrics-{tmp_path.name[-8:]}"
    env = payscore_env(kafka_bootstrap_servers=kafka_bootstrap, input_topic=topic)
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(  # 150 payments at 10/s: about 15 s to look at it
        [
            *payscore_cmd(),
            "produce",
            "--from",
            str(source),
            "--rate",
            "10",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: dict[str, float] = {}

        def acknowledged() -> bool:
            if _status(base + "/healthz") != 200:
                return False
            seen.update({k[0]: v for k, v in _scrape(port).items() if not k[1]})
            return seen.get("payscore_produce_acknowledged_total", 0) > 0

        assert wait_until(acknowledged, 60, alive=proc), seen
        assert _status(base + "/readyz") == 200
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "sent 150" in out
    assert _status(base + "/healthz") == 0  # the endpoint ends with the command


def test_replay_metrics_agree_with_the_topics(
    kafka_bootstrap: str, new_topic: Any, db_url: str, small_world: Any
) -> None:
    source, dlq_topic = new_topic(2), new_topic(1)
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=db_url,
        input_topic=source,
        dlq_topic=dlq_topic,
        max_dlq_attempts=3,
    )
    values = [payment_to_json(p) for p in payments_from(small_world, 10, 7)]
    letters = [_letter(source, i, v) for i, v in enumerate(values[:5])]
    letters += [_letter(source, i + 5, v, attempt=3) for i, v in enumerate(values[5:])]  # parked
    _put_dead_letters(kafka_bootstrap, dlq_topic, letters)
    result = ReplayResult()
    (port,) = free_ports(1)
    with MetricsEndpoint(ReplayCollector(result), port, "127.0.0.1"):
        replay_dead_letters(settings, result=result)
        got = _scrape(port)
    action = "payscore_replay_dead_letters_total"
    replayed, parked = (
        read_all(kafka_bootstrap, source),
        read_all(kafka_bootstrap, parked_topic(settings)),
    )
    assert got[(action, (("action", "replayed"),))] == len(replayed) == 5
    assert got[(action, (("action", "parked"),))] == len(parked) == 2
    assert got[(action, (("action", "skipped"),))] == 0
    assert got[("payscore_replay_published_total", ())] == 7


def test_replay_on_a_taken_port_is_a_one_line_error(
    payscore_env: Any, kafka_bootstrap: str
) -> None:
    env = payscore_env(kafka_bootstrap_servers=kafka_bootstrap)
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*payscore_cmd(), "replay-dlq", "--metrics-port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot serve metrics on port {port}" in done.stderr
    assert "Traceback" not in done.stderr
