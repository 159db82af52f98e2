"""A real single-node Apache Kafka (KRaft) broker for the tests, run from Maven Central jars.

``fetch_kafka()`` resolves the broker jars once into the cache dir with Maven (safe when two
test sessions fetch at once); ``KafkaBroker`` formats a throwaway log dir, starts the combined
broker+controller on free loopback ports and stops it again.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NoReturn

from tests.bed._proc import BED_DIR, cache_dir, free_ports, spawn, tail, terminate

KAFKA_VERSION = "4.1.1"
READY_LINE = "Kafka Server started"
JVM_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


class BedError(RuntimeError):
    """A test-bed service could not be fetched or started; the message says why."""


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}"


def fetch_kafka(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """The directory of the broker's jars, downloading them with Maven on first use only."""
    home = kafka_home(version)
    libs, marker = home / "libs", home / "fetched.ok"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second session waits here, then sees the marker
        if marker.exists():
            return libs
        _check_tool("mvn", "Maven (mvn) is needed to fetch the Kafka jars")
        _check_tool("java", "Java 17+ is needed to run the Kafka broker")
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        cmd = [
            "mvn",
            "-B",
            "-f",
            str(BED_DIR / "pom.xml"),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        if quiet:
            cmd.insert(1, "-q")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise BedError(f"could not fetch Kafka {version} jars with Maven:\n{output}")
        if libs.exists():
            shutil.rmtree(libs)
        staging.rename(libs)
        marker.write_text(f"kafka {version}\n")
    return libs


def _check_tool(name: str, why: str) -> None:
    if shutil.which(name) is None:
        raise BedError(f"{why}, but {name!r} is not on PATH; run: bash tests/bed/install.sh")


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, not starting with '-' (Kafka's rule)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One throwaway combined broker+controller on 127.0.0.1, for one test session."""

    def __init__(self, libs: Path) -> None:
        self.libs = libs
        self.workdir = Path(tempfile.mkdtemp(prefix="payscore-kafka-"))
        self.log_path = self.workdir / "kafka.log"
        self.port, self.controller_port = free_ports(2)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            # Fewer offsets partitions than the default 50: the first consumer group is ready
            # sooner; groups still spread over several coordinators' partitions.
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={BED_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Format the log dir, start the broker and wait until it serves clients."""
        _check_tool("java", "Java 17+ is needed to run the Kafka broker")
        props = self.workdir / "server.properties"
        props.write_text(self._properties())
        fmt = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(props),
                "--standalone",
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if fmt.returncode != 0:
            self.stop()
            output = "\n".join((fmt.stdout + fmt.stderr).splitlines()[-30:])
            raise BedError(f"Kafka storage format failed (exit {fmt.returncode}):\n{output}")
        self.proc = spawn(self._java("kafka.Kafka", str(props)), self.log_path)
        deadline = time.monotonic() + timeout
        while READY_LINE not in self._log_text():
            if self.proc.poll() is not None:
                self._fail(f"Kafka broker exited with code {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                self._fail(f"Kafka broker not ready after {timeout:.0f}s")
            time.sleep(0.2)
        self._check_clients(deadline)

    def _check_clients(self, deadline: float) -> None:
        """The log line says started; prove it by asking for cluster metadata as a client."""
        from kafka.admin import KafkaAdminClient

        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=10_000
                )
                try:
                    admin.describe_cluster()
                    return
                finally:
                    admin.close()
            except Exception as e:  # any client failure means "not yet"
                last = e
                time.sleep(0.5)
        self._fail(f"Kafka broker logged '{READY_LINE}' but clients cannot use it ({last!r})")

    def _fail(self, problem: str) -> NoReturn:
        """Stop and clean up, then raise with the tail of the broker's log."""
        log_tail = tail(self.log_path)
        self.stop()
        raise BedError(f"{problem}; log tail:\n{log_tail}")

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and delete its files. Safe to call twice."""
        terminate(self.proc, grace=20.0)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":  # `python -m tests.bed.kafka fetch` pre-fetches the jars
    if sys.argv[1:] == ["fetch"]:
        started = time.monotonic()
        print(f"Kafka {KAFKA_VERSION} jars in {fetch_kafka()} ({time.monotonic() - started:.1f}s)")
    elif sys.argv[1:] == ["run"]:
        broker = KafkaBroker(fetch_kafka())
        broker.start()
        print(f"Kafka at {broker.bootstrap}; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop()
    else:
        sys.exit(f"usage: python -m tests.bed.kafka fetch|run   (cache: {os.fspath(cache_dir())})")
