"""Shared fixtures: a real Kafka broker and a real MariaDB server, started lazily per session.

Nothing starts until a test asks for it, so unit tests need no services. Set
PAYSCORE_TEST_KAFKA_BOOTSTRAP ("host:port") or PAYSCORE_TEST_DATABASE_URL (a SQLAlchemy URL
whose user may create databases) to use servers you already run instead. The Prometheus that
scrapes consumers is always the session's own (it must scrape ports chosen here);
PAYSCORE_TEST_PROMETHEUS may name its binary. A service that cannot start is a test error
with the reason, never a skip.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.bed._proc import spawn, tail, terminate
from tests.bed.kafka import (
    READY_LINE,
    SCRAM_MECHANISMS,
    BedError,
    KafkaBroker,
    fetch_kafka,
    kafka_home,
)
from tests.bed.mariadb import MariaDBServer
from tests.bed.prometheus import BINARY_ENV as PROMETHEUS_ENV
from tests.bed.prometheus import PrometheusServer

KAFKA_ENV = "PAYSCORE_TEST_KAFKA_BOOTSTRAP"
DATABASE_ENV = "PAYSCORE_TEST_DATABASE_URL"
_BED_TIMES: list[str] = []


def _report(line: str) -> None:
    """Remember a start-up figure for the summary, and show it at once on stderr."""
    _BED_TIMES.append(line)
    print(f"\n[test bed] {line}", file=sys.stderr, flush=True)


def pytest_configure(config: Any) -> None:
    # kafka-python 3.0 loads its protocol schemas through deprecated importlib.resources calls.
    config.addinivalue_line(
        "filterwarnings", "ignore:(read_text|open_text) is deprecated:DeprecationWarning"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _BED_TIMES:
        terminalreporter.section("test bed")
        for line in _BED_TIMES:
            terminalreporter.write_line(line)


def _start_twice(factory: Callable[[], Any], cleanup: str) -> Any:
    """Start a service; on failure try once more on fresh ports (another process may have
    taken a port between choosing and binding it). Cleanup also runs at exit, come what may."""
    for attempt in (1, 2):
        service = factory()
        atexit.register(getattr(service, cleanup))
        try:
            service.start()
            return service
        except BedError as e:
            getattr(service, cleanup)()
            if attempt == 2:
                raise
            print(f"[test bed] retrying once after: {str(e).splitlines()[0]}", file=sys.stderr)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def _kafka_broker() -> Iterator[KafkaBroker | None]:
    """The session's own broker, or None when $PAYSCORE_TEST_KAFKA_BOOTSTRAP is set."""
    override = os.environ.get(KAFKA_ENV)
    if override:
        _report(f"Kafka: using existing broker {override} (from {KAFKA_ENV})")
        yield None
        return
    started = time.monotonic()
    cached = (kafka_home() / "fetched.ok").exists()
    try:
        libs = fetch_kafka()
        fetched = time.monotonic() - started
        broker = _start_twice(lambda: KafkaBroker(libs), "stop")
    except BedError as e:
        pytest.fail(f"test bed: Kafka did not start: {e}", pytrace=False)
    total = time.monotonic() - started
    jars = "jars cached" if cached else f"jars fetched in {fetched:.1f}s"
    _report(f"Kafka broker {broker.bootstrap} ready in {total:.1f}s ({jars})")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka_broker: KafkaBroker | None) -> str:
    """The "host:port" of a real Kafka broker, started for this session (or from the env)."""
    if _kafka_broker is None:
        return os.environ[KAFKA_ENV]
    return _kafka_broker.bootstrap


class RestartableBroker:
    """The session broker with ``stop()`` / ``start()`` on the same ports, keeping its data."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    @property
    def running(self) -> bool:
        return self.broker.proc is not None and self.broker.proc.poll() is None

    def stop(self) -> None:
        terminate(self.broker.proc, grace=20.0)
        self.broker.proc = None

    def start(self, timeout: float = 120.0) -> None:
        if self.running:
            return
        log_path = self.broker.log_path
        seen = log_path.stat().st_size if log_path.exists() else 0
        props = self.broker.workdir / "server.properties"
        self.broker.proc = spawn(self.broker._java("kafka.Kafka", str(props)), log_path)
        deadline = time.monotonic() + timeout
        while READY_LINE not in log_path.read_bytes()[seen:].decode("utf-8", "replace"):
            if self.broker.proc.poll() is not None or time.monotonic() > deadline:
                raise BedError(f"Kafka broker did not restart; log tail:\n{tail(log_path)}")
            time.sleep(0.2)
        self.broker._check_clients(deadline)


@pytest.fixture
def kafka_server(_kafka_broker: KafkaBroker | None) -> Iterator[RestartableBroker]:
    """The session broker, with ``.stop()`` / ``.start()`` for outage tests (restarted after)."""
    if _kafka_broker is None:
        pytest.fail(
            f"this test stops and restarts Kafka, which needs the suite's own broker; "
            f"unset {KAFKA_ENV} to run it",
            pytrace=False,
        )
    server = RestartableBroker(_kafka_broker)
    yield server
    server.start()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[Any]:
    """A kafka-python KafkaAdminClient on the test broker, shared by the session."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="payscore-test-bed")
    try:
        yield admin
    finally:
        admin.close()


def _wait_for_leaders(admin: Any, name: str, partitions: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        described = admin.describe_topics([name])
        parts = described[0]["partitions"] if described else []
        if len(parts) == partitions and all(p["leader_id"] >= 0 for p in parts):
            return
        if time.monotonic() > deadline:
            raise BedError(f"topic {name!r}: partitions have no leader after {timeout:.0f}s")
        time.sleep(0.1)


@pytest.fixture
def new_topic(kafka_admin: Any) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=3)`` creates a fresh uniquely named topic, ready to use."""
    yield from _topic_factory(kafka_admin)


def _topic_factory(kafka_admin: Any) -> Iterator[Callable[..., str]]:
    from kafka.admin import NewTopic

    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "ps-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            wait_for_metadata=True,
        )
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions)
        return name

    yield make
    if created:
        try:
            kafka_admin.delete_topics(created, raise_errors=False)
        except Exception as e:  # cleanup of a throwaway broker is best effort
            print(f"[test bed] could not delete topics {created}: {e!r}", file=sys.stderr)


@pytest.fixture
def topic(new_topic: Callable[..., str]) -> str:
    """A fresh topic with 3 partitions, created for this test."""
    return new_topic(3)


@pytest.fixture
def group_id() -> str:
    """A fresh consumer group id for this test."""
    return f"ps-group-{uuid.uuid4().hex[:16]}"


# ----------------------------------------------------------------------- Kafka over TLS / SASL


@dataclass(frozen=True)
class SecureKafka:
    """A broker with a mutual-TLS listener and a SASL_SSL (SCRAM) listener, and its secrets.

    ``tls_settings()`` / ``sasl_settings()`` are payscore settings for ``payscore_env``: the
    passwords travel to subprocesses in PAYSCORE_* variables, never on a command line.
    """

    plain: str  # for the test's own set-up (topics, reading back); no security
    ssl: str
    sasl: str
    ca_file: str
    cert_file: str
    key_file: str
    key_password: str
    sasl_user: str
    sasl_password: str
    sasl_mechanism: str

    def tls_settings(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": self.ssl,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": self.ca_file,
            "kafka_ssl_certfile": self.cert_file,
            "kafka_ssl_keyfile": self.key_file,
            "kafka_ssl_password": self.key_password,
        }

    def sasl_settings(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": self.sasl,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_ssl_cafile": self.ca_file,
            "kafka_sasl_mechanism": self.sasl_mechanism,
            "kafka_sasl_username": self.sasl_user,
            "kafka_sasl_password": self.sasl_password,
        }


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafka]:
    """A second broker of its own, with TLS and SASL listeners, started only when asked for.

    Separate from the plain session broker because the secure listeners slow every broker
    start (about 1.5 s of CPU) and cannot be added to a running one.
    """
    started = time.monotonic()
    try:
        libs = fetch_kafka()
        broker = _start_twice(lambda: KafkaBroker(libs, secure=True), "stop")
        password = secrets.token_urlsafe(16)
        broker.add_scram_user("payscore-test", password, SCRAM_MECHANISMS[1])
    except BedError as e:
        pytest.fail(f"test bed: the TLS/SASL Kafka broker did not start: {e}", pytrace=False)
    _report(
        f"Kafka broker with TLS {broker.ssl_bootstrap} and SASL_SSL {broker.sasl_bootstrap} "
        f"ready in {time.monotonic() - started:.1f}s"
    )
    tls = broker.tls_dir
    try:
        yield SecureKafka(
            plain=broker.bootstrap,
            ssl=broker.ssl_bootstrap,
            sasl=broker.sasl_bootstrap,
            ca_file=str(tls / "ca.crt"),
            cert_file=str(tls / "client.crt"),
            key_file=str(tls / "client.key"),
            key_password=broker.client_key_password,
            sasl_user="payscore-test",
            sasl_password=password,
            sasl_mechanism=SCRAM_MECHANISMS[1],
        )
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def _secure_kafka_admin(secure_kafka: SecureKafka) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=secure_kafka.plain, client_id="payscore-test-bed")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def secure_new_topic(_secure_kafka_admin: Any) -> Iterator[Callable[..., str]]:
    """``new_topic`` on the TLS/SASL broker (created through its plain listener)."""
    yield from _topic_factory(_secure_kafka_admin)


# ------------------------------------------------------------------------------------- MariaDB


@pytest.fixture(scope="session")
def _mariadb_server() -> Iterator[MariaDBServer | None]:
    """The session's own MariaDB server, or None when $PAYSCORE_TEST_DATABASE_URL is set."""
    if os.environ.get(DATABASE_ENV):
        _report(f"MariaDB: using existing server (from {DATABASE_ENV})")
        yield None
        return
    started = time.monotonic()
    try:
        server = _start_twice(MariaDBServer, "destroy")
    except BedError as e:
        pytest.fail(f"test bed: MariaDB did not start: {e}", pytrace=False)
    _report(f"MariaDB server 127.0.0.1:{server.port} ready in {time.monotonic() - started:.1f}s")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mariadb_url(_mariadb_server: MariaDBServer | None) -> str:
    """SQLAlchemy URL (password included) of a database on a real MariaDB server."""
    if _mariadb_server is None:
        return os.environ[DATABASE_ENV]
    return _mariadb_server.url()


@pytest.fixture
def db_server(_mariadb_server: MariaDBServer | None) -> Iterator[MariaDBServer]:
    """The session's MariaDB server, with ``.stop()`` / ``.start()`` for outage tests.

    Whatever the test does, the server is running again afterwards.
    """
    if _mariadb_server is None:
        pytest.fail(
            f"this test stops and restarts MariaDB, which needs the suite's own server; "
            f"unset {DATABASE_ENV} to run it",
            pytrace=False,
        )
    yield _mariadb_server
    if not _mariadb_server.running:
        _mariadb_server.start()


# ---------------------------------------------------------------------------------- Prometheus


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """The session's own Prometheus (Debian's package, or the binary $PAYSCORE_TEST_PROMETHEUS
    names), scraping every second whatever ``prometheus.scrape(port)`` adds."""
    started = time.monotonic()
    try:
        server = _start_twice(PrometheusServer, "destroy")
    except BedError as e:
        pytest.fail(f"test bed: Prometheus did not start: {e}", pytrace=False)
    source = f" (from {PROMETHEUS_ENV})" if os.environ.get(PROMETHEUS_ENV) else ""
    _report(f"Prometheus {server.url}{source} ready in {time.monotonic() - started:.1f}s")
    try:
        yield server
    finally:
        server.destroy()


@dataclass(frozen=True)
class TlsDatabase:
    """A database whose user is created ``REQUIRE SSL`` on the session's MariaDB server."""

    user: str
    password: str
    port: int
    database: str
    ca_file: str
    cert_file: str
    key_file: str

    def url(self, host: str = "127.0.0.1", **options: str) -> str:
        """``database_url`` without the password, with these ssl_* (etc.) query options."""
        from urllib.parse import urlencode

        query = f"?{urlencode(options)}" if options else ""
        return f"mysql://{self.user}@{host}:{self.port}/{self.database}{query}"


@pytest.fixture(scope="session")
def mariadb_tls(_mariadb_server: MariaDBServer | None) -> TlsDatabase:
    """A TLS-only user and its database on the session's MariaDB (made on first use)."""
    if _mariadb_server is None:
        pytest.fail(
            f"the MySQL TLS tests need the suite's own MariaDB (TLS on, certificates made by "
            f"the test bed); unset {DATABASE_ENV} to run them",
            pytrace=False,
        )
    user, password = "payscore_tls", secrets.token_urlsafe(16)
    _mariadb_server.add_user(user, password, "payscore_tls", require="SSL")
    client = _mariadb_server.client_tls
    return TlsDatabase(
        user=user,
        password=password,
        port=_mariadb_server.port,
        database="payscore_tls",
        ca_file=str(_mariadb_server.ca_file),
        cert_file=str(client.cert),
        key_file=str(client.key),
    )


@pytest.fixture(scope="session")
def _db_admin_engine(mariadb_url: str) -> Iterator[Any]:
    from sqlalchemy import create_engine

    engine = create_engine(mariadb_url, pool_pre_ping=True, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def db_url(_db_admin_engine: Any, _mariadb_server: MariaDBServer | None) -> Iterator[str]:
    """URL of a fresh MariaDB database with the payscore schema, dropped after the test."""
    from sqlalchemy import text

    from payscore.config import Settings
    from payscore.store.engine import make_engine
    from payscore.store.initdb import create_schema

    name = f"ps_{uuid.uuid4().hex[:20]}"
    assert re.fullmatch(r"ps_[0-9a-f]{20}", name)  # it goes into DDL: only our own names
    with _db_admin_engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url_text = _db_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(Settings.model_validate({"database_url": url_text}))
    try:
        create_schema(engine)
    finally:
        engine.dispose()
    yield url_text
    if _mariadb_server is not None and not _mariadb_server.running:
        _mariadb_server.start()
    try:
        with _db_admin_engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    except Exception as e:  # leaving a throwaway database behind is harmless
        print(f"[test bed] could not drop database {name}: {e!r}", file=sys.stderr)


# ------------------------------------------------------------------------------- subprocesses


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    secret = getattr(value, "get_secret_value", None)
    return str(secret() if callable(secret) else value)


def make_payscore_env(base: dict[str, str] | None = None, **settings: Any) -> dict[str, str]:
    """os.environ without inherited PAYSCORE_* settings, plus PAYSCORE_<NAME> for each setting.

    Test-bed variables (PAYSCORE_TEST_*, PAYSCORE_CACHE_DIR) are kept; a None value unsets.
    """
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith("PAYSCORE_") and not key.startswith(("PAYSCORE_TEST_", "PAYSCORE_CACHE")):
            del env[key]
    for name, value in settings.items():
        key = f"PAYSCORE_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = _env_value(value)
    return env


@pytest.fixture
def payscore_env() -> Callable[..., dict[str, str]]:
    """``payscore_env(database_url=..., kafka_bootstrap_servers=...)``: env for a subprocess."""
    return make_payscore_env
