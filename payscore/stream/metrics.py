"""Prometheus metrics and Kubernetes health probes for ``payscore consume``.

The only module that imports prometheus-client. Nothing is counted twice: a collector reads the
plain numbers ``ConsumerStats`` already keeps (updated once a batch) when Prometheus scrapes, on
a registry of its own per consumer, so tests can run several in one process. One HTTP server
answers ``/metrics``, ``/healthz`` (the poll loop turned lately) and ``/readyz`` (partitions
positioned, feature state rebuilt). See docs/pipeline.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
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

log = logging.getLogger(__name__)
#: /healthz fails once the poll loop has not turned for this long. A poll waits at most
#: max_wait_ms, but the loop also waits out database outages (retrying) and a full writer
#: queue; restarting the pod would not cure those, so the bound is generous: Kafka's own
#: max_poll_interval_ms (5 min) would have expelled the consumer by then.
LIVENESS_S = 300.0


class ConsumerCollector(Collector):
    """Turns one consumer's ``ConsumerStats`` into metric families at scrape time."""

    def __init__(self, stats: ConsumerStats, model_version: str) -> None:
        self.stats = stats
        self.model_version = model_version

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        payments = CounterMetricFamily(
            "payscore_payments", "Payments decided, by status.", labels=["status"]
        )
        for status, n in sorted(dict(s.by_status).items()):
            payments.add_metric([status], n)
        yield payments
        dead = CounterMetricFamily(
            "payscore_dead_letters", "Messages sent to the dead-letter topic, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(dict(s.dead_by_kind).items()):
            dead.add_metric([kind], n)
        yield dead
        yield CounterMetricFamily(
            "payscore_duplicates", "Payments already decided before (not decided again).",
            value=s.duplicates,
        )
        yield CounterMetricFamily("payscore_labels", "Fraud labels stored.", value=s.labels)
        yield CounterMetricFamily("payscore_batches", "Batches written.", value=s.batches)
        yield _histogram("payscore_batch_size", "Messages per batch.", s.batch_size)
        yield _histogram(
            "payscore_prepare_seconds", "Time to validate, score and decide a batch.", s.prepare_s
        )
        yield _histogram(
            "payscore_write_seconds", "Time to write a batch and its offsets to the database.",
            s.write_s,
        )
        yield _histogram(
            "payscore_poll_to_commit_seconds",
            "From poll() returning a payment to its decision's database commit.",
            s.commit_latency_s,
        )
        lag = GaugeMetricFamily(
            "payscore_consumer_lag", "Messages behind the partition's end.",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in sorted(dict(s.lag).items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield CounterMetricFamily(
            "payscore_state_rebuilds", "Feature state rebuilds (one per assignment).",
            value=s.rebuilds,
        )
        yield CounterMetricFamily(
            "payscore_state_rebuild_seconds", "Time spent rebuilding feature state.",
            value=s.rebuild_seconds_total,
        )
        yield GaugeMetricFamily(
            "payscore_state_last_rebuild_seconds", "Duration of the last feature state rebuild.",
            value=s.rebuild_s,
        )
        yield InfoMetricFamily(
            "payscore_model", "The model artifact in use.", value={"version": self.model_version}
        )


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name,
        documentation,
        buckets=[(floatToGoString(le), n) for le, n in buckets.cumulative()],
        sum_value=buckets.total,
    )


def build_registry(stats: ConsumerStats, model_version: str) -> CollectorRegistry:
    """A registry of this consumer's metrics only (not prometheus-client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsumerCollector(stats, model_version))
    return registry


def health_app(
    stats: ConsumerStats, registry: CollectorRegistry, *, liveness_s: float = LIVENESS_S
) -> Callable[..., Iterable[bytes]]:
    """WSGI app: /healthz and /readyz answer 200 or 503 with a short reason; else metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            quiet = time.monotonic() - stats.last_loop
            ok, body = quiet <= liveness_s, f"poll loop last turned {quiet:.1f} s ago\n"
        elif path == "/readyz":
            ok = stats.ready
            body = "positioned\n" if ok else "no partitions positioned yet\n"
        else:
            return metrics(environ, start_response)
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Probes every few seconds would flood stderr: log them at debug level."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """The HTTP server in a daemon thread; ``close()`` stops it."""

    def __init__(self, stats: ConsumerStats, model_version: str, port: int, host: str = "") -> None:
        self.registry = build_registry(stats, model_version)
        try:
            self._server = make_server(
                host, port, health_app(stats, self.registry), _ThreadingServer, _QuietHandler
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
