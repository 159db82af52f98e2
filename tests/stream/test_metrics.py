"""The Prometheus exporter reads ConsumerStats; the health probes answer from the same stats."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from payscore.errors import PayscoreError, ServiceUnavailable
from payscore.stream.batches import retry
from payscore.stream.metrics import (
    ConsumerCollector,
    MetricsServer,
    ProducerCollector,
    ReplayCollector,
    build_registry,
    health_app,
    registry_of,
    serve_metrics,
)
from payscore.stream.producer import ProduceStats
from payscore.stream.replay import PARKED, REPLAY, SKIPPED, ReplayItem, ReplayResult
from payscore.stream.stats import CREATE_TIME, Buckets, ConsumerStats, created_to_commit_s


def _fake_batch(stats: ConsumerStats) -> None:
    now = time.monotonic()
    stats.record_batch(
        decided=3,
        by_status={"APPROVE": 2, "REVIEW": 1},
        duplicates=1,
        dead_letters=2,
        polled_at=[now - 0.003, now - 0.003, now - 0.2, now - 0.2, now - 0.2, now - 40.0],
        committed_at=now,
        dead_kinds=["schema", "json"],
    )


def _samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_after_a_fake_batch() -> None:
    stats = ConsumerStats()
    _fake_batch(stats)
    _fake_batch(stats)
    got = _samples(build_registry(stats, "model-v7"))
    assert got[("payscore_payments_total", (("status", "APPROVE"),))] == 4
    assert got[("payscore_payments_total", (("status", "REVIEW"),))] == 2
    assert got[("payscore_dead_letters_total", (("kind", "json"),))] == 2
    assert got[("payscore_dead_letters_total", (("kind", "schema"),))] == 2
    assert got[("payscore_duplicates_total", ())] == 2
    assert got[("payscore_batches_total", ())] == 2
    assert got[("payscore_model_info", (("version", "model-v7"),))] == 1
    # Six messages a batch, two batches: all in the batch-size bucket le=10, none at le=5.
    assert got[("payscore_batch_size_bucket", (("le", "5.0"),))] == 0
    assert got[("payscore_batch_size_bucket", (("le", "10.0"),))] == 2
    assert got[("payscore_batch_size_count", ())] == 2
    lat = "payscore_poll_to_commit_seconds_bucket"
    assert got[(lat, (("le", "0.005"),))] == 4
    assert got[(lat, (("le", "0.25"),))] == 10
    assert got[(lat, (("le", "30.0"),))] == 10  # the 40 s one is above every bound
    assert got[(lat, (("le", "+Inf"),))] == 12
    assert got[("payscore_poll_to_commit_seconds_count", ())] == 12


def test_registries_are_per_consumer() -> None:
    a, b = ConsumerStats(), ConsumerStats()
    _fake_batch(a)
    got_a = _samples(build_registry(a, "x"))
    got_b = _samples(build_registry(b, "y"))
    assert got_a[("payscore_duplicates_total", ())] == 1
    assert got_b[("payscore_duplicates_total", ())] == 0
    assert ("payscore_payments_total", (("status", "APPROVE"),)) not in got_b


def test_lag_and_rebuild_gauges() -> None:
    stats = ConsumerStats()
    stats.lag = {("payments", 0): 5, ("payments", 3): 0}
    stats.record_rebuild(1.5, rows=1000)
    stats.record_rebuild(0.5, rows=300)
    got = _samples(build_registry(stats, "x"))
    assert got[("payscore_consumer_lag", (("partition", "0"), ("topic", "payments")))] == 5
    assert got[("payscore_consumer_lag", (("partition", "3"), ("topic", "payments")))] == 0
    assert got[("payscore_state_rebuilds_total", ())] == 2
    assert got[("payscore_state_rebuild_seconds_total", ())] == 2.0
    assert got[("payscore_state_last_rebuild_seconds", ())] == 0.5
    assert got[("payscore_state_rebuild_rows_total", ())] == 1300
    assert got[("payscore_state_last_rebuild_rows", ())] == 300


def test_retries_are_counted_by_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ConsumerStats()
    failures = iter([ServiceUnavailable("down"), ServiceUnavailable("down")])

    def flaky() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "written"

    import payscore.stream.batches as batches

    sleeps: list[float] = []
    monkeypatch.setattr(batches.time, "sleep", sleeps.append)
    assert retry(flaky, "write the batch", lambda: False, stats.retries) == "written"
    assert sleeps == [0.2, 0.4]
    got = _samples(build_registry(stats, "x"))
    assert got[("payscore_retries_total", (("operation", "write_the_batch"),))] == 2


def test_a_stop_while_retrying_counts_the_attempt() -> None:
    counts: dict[str, int] = {}

    def down() -> None:
        raise ServiceUnavailable("down")

    assert retry(down, "read the database", lambda: True, counts) is None
    assert counts == {"read_the_database": 1}


def _record(offset: int, timestamp: int | None, timestamp_type: int | None = CREATE_TIME) -> Any:
    return ConsumerRecord(
        "payments", 0, -1, offset, timestamp, timestamp_type, b"k", b"v", [], None, 1, 1, -1
    )


def _row(offset: int, transaction_id: str) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "kafka_topic": "payments",
        "kafka_partition": 0,
        "kafka_offset": offset,
    }


def test_send_to_commit_counts_decided_payments_stamped_by_their_producer() -> None:
    committed = 1_000_000.0
    records = [
        _record(0, 999_998_000),  # 2 s before the commit
        _record(1, 999_999_500),  # a dead letter: no decision row
        _record(2, 1_000_003_000),  # the producer's clock 3 s ahead: counted as zero
        _record(3, 999_990_000, timestamp_type=1),  # the broker's LogAppendTime: skipped
        _record(4, None, timestamp_type=None),  # no timestamp (old message format): skipped
        _record(5, 999_999_000),  # turned into a duplicate by the writer: not decided
        _record(6, 999_999_750),
        _record(7, 999_999_900),  # t6 again in the same batch: the writer's duplicate
    ]
    rows = [_row(o, f"t{o}") for o in (0, 2, 3, 4, 5, 6)] + [_row(7, "t6")]
    got = created_to_commit_s(records, rows, ["t5", "t6"], committed)
    assert sorted(got.tolist()) == [0.0, 0.25, 2.0]
    stats = ConsumerStats()
    assert not stats.track_send_to_commit  # no metrics endpoint: the writer skips the work
    registry = build_registry(stats, "x")
    assert stats.track_send_to_commit
    stats.send_to_commit_s.observe(got)
    samples = _samples(registry)
    assert samples[("payscore_send_to_commit_seconds_count", ())] == 3
    assert samples[("payscore_send_to_commit_seconds_sum", ())] == 2.25
    assert samples[("payscore_send_to_commit_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("payscore_send_to_commit_seconds_bucket", (("le", "1800.0"),))] == 3


def test_bucket_bounds_are_inclusive() -> None:
    b = Buckets([1.0, 2.0])
    b.observe([1.0, 1.5, 2.0, 3.0])
    assert b.cumulative() == [(1.0, 1), (2.0, 3), (float("inf"), 4)]
    assert b.total == 7.5


def _call(app, path: str) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    seen = {}

    def start_response(status: str, headers: list) -> None:  # type: ignore[type-arg]
        seen["status"] = status

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], body


def test_health_probes() -> None:
    stats = ConsumerStats()
    collector = ConsumerCollector(stats, "x")
    app = health_app(registry_of(collector), *collector.probes(liveness_s=60))
    assert _call(app, "/readyz")[0].startswith("503")
    stats.ready = True
    assert _call(app, "/readyz")[0].startswith("200")
    stats.last_loop = time.monotonic()
    assert _call(app, "/healthz")[0].startswith("200")
    stats.last_loop = time.monotonic() - 120
    assert _call(app, "/healthz")[0].startswith("503")


def test_server_serves_metrics_and_probes_over_http() -> None:
    stats = ConsumerStats()
    _fake_batch(stats)
    server = MetricsServer(stats, "v1", port=0, host="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()  # noqa: S310
        assert 'payscore_payments_total{status="APPROVE"} 2.0' in text
        try:
            urllib.request.urlopen(base + "/readyz", timeout=10)  # noqa: S310
            raise AssertionError("/readyz answered 200 before the consumer was positioned")
        except urllib.error.HTTPError as e:
            assert e.code == 503
        stats.ready = True
        assert urllib.request.urlopen(base + "/readyz", timeout=10).status == 200  # noqa: S310
    finally:
        server.close()


def test_a_taken_port_is_a_clean_error() -> None:
    first = MetricsServer(ConsumerStats(), "v1", port=0, host="127.0.0.1")
    try:
        with pytest.raises(PayscoreError, match=f"port {first.port}"):
            MetricsServer(ConsumerStats(), "v1", port=first.port, host="127.0.0.1")
    finally:
        first.close()


class _Future:
    """Acknowledged at once, or failed, like kafka-python's future after the broker answered."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def add_callback(self, fn, *args):  # type: ignore[no-untyped-def]
        if self.ok:
            fn(*args, object())
        return self

    def add_errback(self, fn):  # type: ignore[no-untyped-def]
        if not self.ok:
            fn(RuntimeError("refused"))
        return self


def test_producer_metrics_count_what_the_sender_heard() -> None:
    from payscore.config import Settings
    from payscore.stream.producer import _Sender

    class Producer:
        def __init__(self) -> None:
            self.n = 0

        def send(self, topic, key=None, value=None):  # type: ignore[no-untyped-def]
            self.n += 1
            return _Future(ok=self.n != 3)  # the third one is refused

    stats = ProduceStats(payments=4, bad=1, duplicates=2, labels=3)
    sender = _Sender(Producer(), Settings(), stats)
    for _ in range(2):
        sender.send("t", b"k", b"v")
    got = _samples(registry_of(ProducerCollector(stats)))
    assert got[("payscore_produce_acknowledged_total", ())] == 2
    assert got[("payscore_produce_send_seconds_count", ())] == 2  # observed at the scrape
    assert got[("payscore_produce_failed_total", ())] == 0
    with pytest.raises(ServiceUnavailable, match="1 message"):
        sender.send("t", b"k", b"v")
    got = _samples(registry_of(ProducerCollector(stats)))
    assert got[("payscore_produce_failed_total", ())] == 1
    assert got[("payscore_produce_acknowledged_total", ())] == 2
    assert got[("payscore_produce_sent_total", (("kind", "payment"),))] == 4
    assert got[("payscore_produce_sent_total", (("kind", "bad"),))] == 1
    assert got[("payscore_produce_sent_total", (("kind", "duplicate"),))] == 2
    assert got[("payscore_produce_sent_total", (("kind", "label"),))] == 3


def test_replay_metrics_count_actions_as_they_are_decided() -> None:
    result = ReplayResult()
    got = _samples(registry_of(ReplayCollector(result)))
    assert got[("payscore_replay_dead_letters_total", (("action", "replayed"),))] == 0
    for action in (REPLAY, REPLAY, PARKED, SKIPPED):
        result.items.append(ReplayItem(action, 0, len(result.items), None))
    result.published = 3
    got = _samples(registry_of(ReplayCollector(result)))
    assert got[("payscore_replay_dead_letters_total", (("action", "replayed"),))] == 2
    assert got[("payscore_replay_dead_letters_total", (("action", "parked"),))] == 1
    assert got[("payscore_replay_dead_letters_total", (("action", "skipped"),))] == 1
    assert got[("payscore_replay_dead_letters_total", (("action", "malformed"),))] == 0
    assert got[("payscore_replay_published_total", ())] == 3


def test_serve_metrics_is_off_without_a_port_and_shared_with_probes_on() -> None:
    result = ReplayResult()
    with serve_metrics(ReplayCollector(result), None) as off:
        assert off is None
    with serve_metrics(ReplayCollector(result), 0) as endpoint:
        base = f"http://127.0.0.1:{endpoint.port}"
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()  # noqa: S310
        assert 'payscore_replay_dead_letters_total{action="replayed"} 0.0' in text
        for probe in ("/healthz", "/readyz"):
            assert urllib.request.urlopen(base + probe, timeout=10).status == 200  # noqa: S310
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/healthz", timeout=5)  # noqa: S310 - closed on exit
