"""Prometheus metrics and Kubernetes health probes for ``consume``, ``produce`` and ``replay-dlq``.

The only module that imports prometheus-client. Nothing is counted twice: a collector per
command reads the plain numbers the command already keeps (``ConsumerStats``, ``ProduceStats``,
``ReplayResult``) when Prometheus scrapes, on a registry of its own, so tests can run several in
one process. One HTTP server (``MetricsEndpoint``) answers ``/metrics``, ``/healthz`` and
``/readyz`` for all three; for the consumer, live means the poll loop turned lately and ready
means partitions positioned and feature state rebuilt. See docs/operations.md.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from payscore.errors import PayscoreError
from payscore.stream.stats import Buckets, ConsumerStats

if TYPE_CHECKING:
    from payscore.stream.producer import ProduceStats
    from payscore.stream.replay import ReplayResult

log = logging.getLogger(__name__)
#: /healthz fails once the poll loop has not turned for this long. A poll waits at most
#: max_wait_ms, but the loop also waits out database outages (retrying) and a full writer
#: queue; restarting the pod would not cure those, so the bound is generous: Kafka's own
#: max_poll_interval_ms (5 min) would have expelled the consumer by then.
LIVENESS_S = 300.0
#: A probe: (ok, one-line reason) for /healthz or /readyz.
Probe = Callable[[], tuple[bool, str]]


def _running() -> tuple[bool, str]:
    return True, "running"


class ConsumerCollector(Collector):
    """Turns one consumer's ``ConsumerStats`` into metric families at scrape time."""

    def __init__(self, stats: ConsumerStats, model_version: str) -> None:
        self.stats = stats
        self.model_version = model_version
        stats.track_send_to_commit = True  # a dictionary lookup a payment, for this metric only

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield _labelled(
            CounterMetricFamily,
            "payscore_payments",
            "Payments decided, by status.",
            "status",
            s.by_status,
        )
        yield _labelled(
            CounterMetricFamily,
            "payscore_dead_letters",
            "Messages sent to the dead-letter topic, by kind.",
            "kind",
            s.dead_by_kind,
        )
        yield CounterMetricFamily(
            "payscore_duplicates",
            "Payments already decided before (not decided again).",
            value=s.duplicates,
        )
        yield CounterMetricFamily("payscore_labels", "Fraud labels stored.", value=s.labels)
        yield CounterMetricFamily("payscore_batches", "Batches written.", value=s.batches)
        yield _histogram("payscore_batch_size", "Messages per batch.", s.batch_size)
        yield _histogram(
            "payscore_prepare_seconds", "Time to validate, score and decide a batch.", s.prepare_s
        )
        yield _histogram(
            "payscore_write_seconds",
            "Time to write a batch and its offsets to the database.",
            s.write_s,
        )
        yield _histogram(
            "payscore_poll_to_commit_seconds",
            "From poll() returning a payment to its decision's database commit.",
            s.commit_latency_s,
        )
        yield _histogram(
            "payscore_send_to_commit_seconds",
            "From the producer's Kafka timestamp (CreateTime) of a payment to its decision's "
            "database commit.",
            s.send_to_commit_s,
        )
        yield _labelled(
            CounterMetricFamily,
            "payscore_retries",
            "Operations retried after a database or Kafka outage (each failed attempt).",
            "operation",
            s.retries,
        )
        lag = GaugeMetricFamily(
            "payscore_consumer_lag",
            "Messages behind the partition's end.",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in sorted(dict(s.lag).items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield CounterMetricFamily(
            "payscore_state_rebuilds",
            "Feature state rebuilds (one per assignment).",
            value=s.rebuilds,
        )
        yield CounterMetricFamily(
            "payscore_state_rebuild_seconds",
            "Time spent rebuilding feature state.",
            value=s.rebuild_seconds_total,
        )
        yield GaugeMetricFamily(
            "payscore_state_last_rebuild_seconds",
            "Duration of the last feature state rebuild.",
            value=s.rebuild_s,
        )
        yield CounterMetricFamily(
            "payscore_state_rebuild_rows",
            "Stored payments replayed by feature state rebuilds.",
            value=s.rebuild_rows_total,
        )
        yield GaugeMetricFamily(
            "payscore_state_last_rebuild_rows",
            "Stored payments replayed by the last feature state rebuild.",
            value=s.rebuild_rows,
        )
        yield InfoMetricFamily(
            "payscore_model", "The model artifact in use.", value={"version": self.model_version}
        )

    def probes(self, liveness_s: float = LIVENESS_S) -> tuple[Probe, Probe]:
        """(live, ready): the poll loop turned within ``liveness_s``; partitions positioned."""
        stats = self.stats

        def live() -> tuple[bool, str]:
            quiet = time.monotonic() - stats.last_loop
            return quiet <= liveness_s, f"poll loop last turned {quiet:.1f} s ago"

        def ready() -> tuple[bool, str]:
            return (True, "positioned") if stats.ready else (False, "no partitions positioned yet")

        return live, ready


class ProducerCollector(Collector):
    """``payscore produce``: messages handed to Kafka, acknowledged, failed; send latency."""

    def __init__(self, stats: ProduceStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        s.observe_latencies()
        kinds = {"payment": s.payments, "bad": s.bad, "duplicate": s.duplicates, "label": s.labels}
        yield _labelled(
            CounterMetricFamily,
            "payscore_produce_sent",
            "Messages handed to the Kafka client, by kind (payment, bad, duplicate, label).",
            "kind",
            kinds,
        )
        yield CounterMetricFamily(
            "payscore_produce_acknowledged", "Messages the broker acknowledged.", value=s.acked
        )
        yield CounterMetricFamily(
            "payscore_produce_failed",
            "Messages the broker did not take (send failed).",
            value=s.failed,
        )
        yield _histogram(
            "payscore_produce_send_seconds",
            "From handing a message to the Kafka client to the broker's acknowledgement.",
            s.send_latency_s,
        )


class ReplayCollector(Collector):
    """``payscore replay-dlq``: dead letters handled so far, by what was done with them."""

    #: ReplayResult's actions as metric label values; "parked" is dead-lettered again.
    ACTIONS = {
        "replay": "replayed",
        "parked": "parked",
        "skipped": "skipped",
        "malformed": "malformed",
    }

    def __init__(self, result: ReplayResult) -> None:
        self.result = result

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys(self.ACTIONS.values(), 0)
        for item in list(self.result.items):
            counts[self.ACTIONS[item.action]] += 1
        yield _labelled(
            CounterMetricFamily,
            "payscore_replay_dead_letters",
            "Dead letters handled, by action: replayed to their source topic, parked "
            "(dead-lettered again, to <dlq>.parked), skipped by a filter, malformed.",
            "action",
            counts,
        )
        yield CounterMetricFamily(
            "payscore_replay_published",
            "Replayed or parked messages the broker acknowledged.",
            value=self.result.published,
        )


def _labelled(
    family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: dict[str, int],
) -> Metric:
    metric = family(name, documentation, labels=[label])
    for key, n in sorted(dict(values).items()):  # a copy: another thread may add a key
        metric.add_metric([key], n)
    return metric


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name,
        documentation,
        buckets=[(floatToGoString(le), n) for le, n in buckets.cumulative()],
        sum_value=buckets.total,
    )


def registry_of(collector: Collector) -> CollectorRegistry:
    """A registry of this collector only (not prometheus-client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def build_registry(stats: ConsumerStats, model_version: str) -> CollectorRegistry:
    """A registry of one consumer's metrics."""
    return registry_of(ConsumerCollector(stats, model_version))


def health_app(
    registry: CollectorRegistry, live: Probe = _running, ready: Probe = _running
) -> Callable[..., Iterable[bytes]]:
    """WSGI app: /healthz and /readyz answer 200 or 503 with a short reason; else metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            ok, reason = live()
        elif path == "/readyz":
            ok, reason = ready()
        else:
            return metrics(environ, start_response)
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{reason}\n".encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Probes every few seconds would flood stderr: log them at debug level."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsEndpoint:
    """/metrics, /healthz and /readyz for one collector, served by a daemon thread;
    ``close()`` stops it. Shared by ``consume``, ``produce`` and ``replay-dlq``."""

    def __init__(
        self,
        collector: Collector,
        port: int,
        host: str = "",
        *,
        live: Probe = _running,
        ready: Probe = _running,
    ) -> None:
        self.registry = registry_of(collector)
        try:
            self._server = make_server(
                host,
                port,
                health_app(self.registry, live, ready),
                _ThreadingServer,
                _QuietHandler,
            )
        except OSError as e:  # most often: the port is taken
            raise PayscoreError(f"cannot serve metrics on port {port}: {e.strerror or e}") from e
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="payscore-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics, /healthz and /readyz on port %d", self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class MetricsServer(MetricsEndpoint):
    """The consumer's endpoint: its stats, its model version, its liveness and readiness."""

    def __init__(self, stats: ConsumerStats, model_version: str, port: int, host: str = "") -> None:
        collector = ConsumerCollector(stats, model_version)
        live, ready = collector.probes()
        super().__init__(collector, port, host, live=live, ready=ready)


def serve_metrics(collector: Collector, port: int | None) -> contextlib.AbstractContextManager[Any]:
    """``with serve_metrics(...)``: an endpoint on ``port`` for ``produce`` and ``replay-dlq``
    while the block runs; nothing when the port is unset (``metrics_port``)."""
    return contextlib.nullcontext() if port is None else MetricsEndpoint(collector, port)
