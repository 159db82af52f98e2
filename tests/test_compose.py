"""docker-compose.yml agrees with payscore's defaults and with what the README documents."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from payscore.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# The README shows exactly this URL (password via PAYSCORE_DATABASE_PASSWORD=payscore).
DOCUMENTED_DATABASE_URL = "mysql://payscore@localhost:3306/payscore"
DOCUMENTED_PASSWORD = "payscore"


@pytest.fixture(scope="module")
def services() -> dict:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data["services"]


def _host_ports(service: dict) -> set[int]:
    ports = set()
    for mapping in service.get("ports", []):
        parts = str(mapping).split(":")
        ports.add(int(parts[-2] if len(parts) >= 2 else parts[0]))
    return ports


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


LONG_RUNNING = {"kafka", "mysql", "consumer", "dashboard", "prometheus"}
ONE_OFF = {"setup", "producer"}  # the schema and model; the demo profile's payments


def test_the_whole_stack_is_there_and_long_running_services_have_healthchecks(services):
    assert set(services) == LONG_RUNNING | ONE_OFF
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["producer"]["profiles"] == ["demo"]  # `up` alone does not flood the topic


def _command(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _flag(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def test_payscore_services_reach_the_others_inside_the_network(services):
    kafka_env = _env(services["kafka"])
    assert "INTERNAL://kafka:29092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL:PLAINTEXT" in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    for name in ("setup", "consumer", "dashboard", "producer"):
        env = _env(services[name])
        assert env["PAYSCORE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092", name
        url = urlsplit(env["PAYSCORE_DATABASE_URL"])
        assert (url.hostname, url.port, url.password) == ("mysql", 3306, None), name
        assert env["PAYSCORE_DATABASE_PASSWORD"] == _env(services["mysql"])["MYSQL_PASSWORD"]
        # Every name is a real setting (a typo would be silently ignored by payscore).
        fields = {f"PAYSCORE_{k.upper()}" for k in Settings.model_fields}
        assert set(env) <= fields, set(env) - fields
    depends = services["consumer"]["depends_on"]
    assert depends["setup"]["condition"] == "service_completed_successfully"
    assert depends["kafka"]["condition"] == depends["mysql"]["condition"] == "service_healthy"


def test_consumer_serves_metrics_and_its_healthcheck_asks_readyz(services):
    consumer = services["consumer"]
    assert _command(consumer)[:2] == ["payscore", "consume"]
    port = int(_flag(_command(consumer), "--metrics-port"))
    assert port in _host_ports(consumer)
    probe = " ".join(consumer["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in probe
    producer = services["producer"]
    assert _command(producer)[:2] == ["payscore", "produce"]
    assert int(_flag(_command(producer), "--metrics-port")) != port


def test_dashboard_listens_where_its_port_is_published(services):
    dashboard = services["dashboard"]
    command = _command(dashboard)
    assert command[:2] == ["payscore", "dashboard"]
    assert _flag(command, "--host") == "0.0.0.0"  # noqa: S104 - inside its container
    assert int(_flag(command, "--port")) in _host_ports(dashboard)


def test_prometheus_scrapes_the_consumers_metrics_port(services):
    prometheus = services["prometheus"]
    assert 9090 in _host_ports(prometheus)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if ":" in v}
    config_path = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    consumer_port = _flag(_command(services["consumer"]), "--metrics-port")
    producer_port = _flag(_command(services["producer"]), "--metrics-port")
    assert f"consumer:{consumer_port}" in targets
    assert f"producer:{producer_port}" in targets
    assert all(t.split(":")[0] in services for t in targets), targets


def test_kafka_port_matches_default_bootstrap(services):
    default = Settings().kafka_bootstrap_servers
    host, _, port = default.rpartition(":")
    kafka = services["kafka"]
    assert int(port) in _host_ports(kafka)
    assert f"PLAINTEXT://{host}:{port}" in _env(kafka)["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_is_single_node_kraft(services):
    assert not any(
        "zookeeper" in name or "zookeeper" in str(s.get("image", ""))
        for name, s in services.items()
    )
    env = _env(services["kafka"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert not any("ZOOKEEPER" in key for key in env)
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env[key] == "1"


def test_mysql_matches_documented_url(services):
    url = urlsplit(DOCUMENTED_DATABASE_URL)
    mysql = services["mysql"]
    env = _env(mysql)
    assert mysql["image"].startswith("mysql:8")
    assert url.port in _host_ports(mysql)
    assert env["MYSQL_DATABASE"] == url.path.lstrip("/")
    assert env["MYSQL_USER"] == url.username
    # Password comes from the environment, with the documented default.
    assert env["MYSQL_PASSWORD"] == f"${{MYSQL_PASSWORD:-{DOCUMENTED_PASSWORD}}}"
    assert Settings(database_url=DOCUMENTED_DATABASE_URL).database_url == DOCUMENTED_DATABASE_URL
