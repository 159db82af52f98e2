"""Choosing the paced benchmark's load generator, and its librdkafka settings."""

from __future__ import annotations

import sys

import pytest
from pydantic import SecretStr

from payscore.bench import loadgen
from payscore.config import Settings
from payscore.errors import ConfigError, MissingExtra


def test_auto_prefers_confluent_kafka_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen, "confluent_available", lambda: True)
    assert loadgen.resolve("auto") == "confluent-kafka"
    monkeypatch.setattr(loadgen, "confluent_available", lambda: False)
    assert loadgen.resolve("auto") == "kafka-python"
    assert loadgen.resolve("kafka-python") == "kafka-python"


def test_asking_for_an_unknown_generator_is_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="must be one of auto, confluent-kafka, kafka-python"):
        loadgen.resolve("rdkafka")


def test_a_missing_confluent_kafka_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not "invalid setting": the choice is fine, an optional client is not installed."""
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # makes its import fail
    with pytest.raises(MissingExtra) as raised:
        loadgen.resolve("confluent-kafka")
    assert str(raised.value) == (
        "confluent-kafka (the librdkafka load generator) is not installed; "
        'run: pip install "payscore[bench]"'
    )
    assert raised.value.extra == "bench"
    assert loadgen.resolve("auto") == "kafka-python"


def test_confluent_config_carries_the_connection_settings() -> None:
    settings = Settings(
        kafka_bootstrap_servers="k1:9093, k2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="gateway",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_cafile="/etc/ca.pem",
    )
    config = loadgen.confluent_config(settings, linger_ms=5)
    assert config["bootstrap.servers"] == "k1:9093,k2:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert (config["sasl.username"], config["sasl.password"]) == ("gateway", "s3cret")
    assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert config["linger.ms"] == 5 and config["acks"] == "all"
    assert config["partitioner"] == "murmur2_random"
    plain = loadgen.confluent_config(Settings(), linger_ms=5)
    assert not any(k.startswith(("sasl.", "ssl.")) for k in plain)


def test_describe_names_the_installed_version() -> None:
    assert loadgen.describe("kafka-python").startswith("kafka-python 3.")
    assert loadgen.describe("no-such-package-here") == "no-such-package-here"
