"""A real single-node Apache Kafka (KRaft) broker for the tests, run from Maven Central jars.

``fetch_kafka()`` resolves the broker jars once into the cache dir with Maven (safe when two
test sessions fetch at once); ``KafkaBroker`` formats a throwaway log dir, starts the combined
broker+controller on free loopback ports (optionally with TLS and SASL listeners) and stops it
again.
"""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

from tests.bed._proc import BED_DIR, BedError, cache_dir, free_ports, spawn, tail, terminate
from tests.bed.tls import TestCA

KAFKA_VERSION = "4.1.1"
READY_LINE = "Kafka Server started"
#: SCRAM mechanisms the SASL_SSL listener accepts; users are added after start.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
JVM_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


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


def _has_credentials(described: dict[str, Any], user: str) -> bool:
    info = described.get(user) or {}
    return not info.get("error") and bool(info.get("credential_infos"))


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, not starting with '-' (Kafka's rule)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One throwaway combined broker+controller on 127.0.0.1, for one test session.

    ``secure=True`` adds a mutual-TLS listener and a SASL_SSL (SCRAM) listener, with a CA and
    certificates made at start. They cost the broker about 1.5 s of CPU at start (measured:
    JVM CPU at ready 5.6 s plain, 7.1 s secure; Kafka 4.1 cannot add them to a running broker:
    ``advertised.listeners`` is not dynamic), so only the tests that need them start one.
    """

    def __init__(self, libs: Path, secure: bool = False) -> None:
        self.libs = libs
        self.secure = secure
        self.workdir = Path(tempfile.mkdtemp(prefix="payscore-kafka-"))
        self.log_path = self.workdir / "kafka.log"
        self.port, self.controller_port, self.ssl_port, self.sasl_port = free_ports(4)
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_dir = self.workdir / "tls"
        self.client_key_password = secrets.token_urlsafe(12)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_bootstrap(self) -> str:
        """The TLS listener: server and client certificates both checked (mutual TLS)."""
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_SSL listener: SCRAM users (see ``add_scram_user``) over server-checked TLS."""
        return f"127.0.0.1:{self.sasl_port}"

    def _make_tls(self) -> None:
        """A CA, the broker's key store and a client certificate whose key has a password."""
        ca = TestCA(self.tls_dir)
        ca.issue("broker").write_bundle(self.tls_dir / "broker.pem")
        ca.issue("client", password=self.client_key_password)

    def _properties(self) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        if self.secure:
            listeners += [
                f"SSL://127.0.0.1:{self.ssl_port}",
                f"SASL_SSL://127.0.0.1:{self.sasl_port}",
            ]
        listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_port}")
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
                + (["SSL:SSL", "SASL_SSL:SASL_SSL"] if self.secure else [])
            ),
            **(self._secure_properties() if self.secure else {}),
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

    def _secure_properties(self) -> dict[str, str]:
        # Both secure listeners present the broker's certificate; the SSL listener also
        # demands a client certificate from the bed's CA, the SASL one a SCRAM login.
        return {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls_dir / "broker.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls_dir / "ca.crt"),
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            **{
                f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": SCRAM_LOGIN
                for m in SCRAM_MECHANISMS
            },
        }

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
        if self.secure:
            self._make_tls()
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

    def add_scram_user(self, user: str, password: str, mechanism: str = "SCRAM-SHA-256") -> None:
        """Create (or reset) a SCRAM login for the SASL_SSL listener, through the plain one.

        Done when a test first needs it rather than at start: a SCRAM credential is a
        metadata record, so clients may see it a moment later; wait until it is listed.
        """
        from kafka.admin import KafkaAdminClient, ScramMechanism, UserScramCredentialUpsertion

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            kind = ScramMechanism[mechanism.replace("-", "_")]
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(user, kind, password, iterations=4096)]
            )
            if errors.get(user):
                raise BedError(f"could not create SCRAM user {user!r}: {errors[user]}")
            deadline = time.monotonic() + 30
            while not _has_credentials(admin.describe_user_scram_credentials([user]), user):
                if time.monotonic() > deadline:
                    raise BedError(f"SCRAM user {user!r} not visible after 30s")
                time.sleep(0.1)
        finally:
            admin.close()

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
