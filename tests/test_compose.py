"""docker-compose.yml agrees with payscore's defaults and with what the README documents."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from payscore.config import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
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


def test_every_service_has_a_healthcheck(services):
    assert set(services) == {"kafka", "mysql"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


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
