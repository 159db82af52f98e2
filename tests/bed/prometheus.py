"""A throwaway Prometheus for the tests: own temp dir, loopback, a free port, 1 s scrapes.

Targets are not known when it starts (each test serves metrics on a port of its own), so the
scrape config reads them from a file (``file_sd_configs``) that ``scrape()`` rewrites;
Prometheus notices the change within a second or so. Figures are read back through its HTTP
API (``/api/v1/query``), as a dashboard or an alert rule would read them.

The binary is Debian's package ``prometheus`` (``tests/bed/install.sh``), or the one named
by $PAYSCORE_TEST_PROMETHEUS. A Prometheus already running elsewhere cannot be used instead:
it would have to scrape the ports this session chooses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.bed._proc import BedError, free_ports, spawn, tail, terminate

BINARY_ENV = "PAYSCORE_TEST_PROMETHEUS"
SCRAPE_INTERVAL_S = 1
MISSING = (
    "Prometheus is not installed ({what} not found); run: bash tests/bed/install.sh "
    "(Debian package prometheus) or set $" + BINARY_ENV + " to a prometheus binary"
)
CONFIG = """\
global:
  scrape_interval: {interval}s
  scrape_timeout: {interval}s
  evaluation_interval: {interval}s
scrape_configs:
  - job_name: payscore
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: {interval}s
"""


def prometheus_binary() -> str:
    configured = os.environ.get(BINARY_ENV)
    candidates = [configured] if configured else [shutil.which("prometheus"), "/usr/bin/prometheus"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BedError(MISSING.format(what=configured or "prometheus"))


class PrometheusServer:
    """One private Prometheus: ``start()``, ``scrape(port)``, ``query(expr)``, ``stop()``."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="payscore-prometheus-"))
        self.targets_file = self.workdir / "targets.json"
        self.config_file = self.workdir / "prometheus.yml"
        self.log_path = self.workdir / "prometheus.log"
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._targets: list[str] = []

    def start(self, timeout: float = 60.0) -> None:
        binary = prometheus_binary()
        self.targets_file.write_text("[]\n")
        self.config_file.write_text(
            CONFIG.format(interval=SCRAPE_INTERVAL_S, targets=self.targets_file)
        )
        args = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        self.proc = spawn(args, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BedError(
                    f"Prometheus exited with code {self.proc.returncode} while starting; "
                    f"log tail:\n{tail(self.log_path)}"
                )
            if self._status("/-/ready") == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise BedError(
            f"Prometheus not ready after {timeout:.0f}s; log tail:\n{tail(self.log_path)}"
        )

    def _status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:  # noqa: S310 - loopback
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def scrape(self, port: int, host: str = "127.0.0.1") -> str:
        """Add ``host:port`` to the scrape targets; returns its ``instance`` label."""
        instance = f"{host}:{port}"
        if instance not in self._targets:
            self._targets.append(instance)
            tmp = self.targets_file.with_suffix(".tmp")
            tmp.write_text(json.dumps([{"targets": self._targets}]))
            tmp.replace(self.targets_file)  # atomic: Prometheus never reads half a file
        return instance

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the result vector (may be empty)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            body = json.load(r)
        if body.get("status") != "success":
            raise BedError(f"Prometheus query {expr!r} failed: {body}")
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single number an expression gives now, or None while it has no sample."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise BedError(f"Prometheus query {expr!r} gave {len(result)} series, expected 1")
        return float(result[0]["value"][1])

    def target_health(self, instance: str) -> str | None:
        """ "up", "down" or "unknown" as Prometheus' target page says; None if not yet known."""
        with urllib.request.urlopen(self.url + "/api/v1/targets", timeout=10) as r:  # noqa: S310
            body = json.load(r)
        for target in body["data"]["activeTargets"]:
            if target["labels"].get("instance") == instance:
                return str(target["health"])
        return None

    def stop(self) -> None:
        terminate(self.proc, grace=30.0)
        self.proc = None

    def destroy(self) -> None:
        """Stop and delete every file of this server."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
