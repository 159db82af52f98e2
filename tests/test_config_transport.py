"""The Kafka TLS settings reach kafka-python (and librdkafka) and stay masked elsewhere."""

from __future__ import annotations

from payscore.bench import loadgen
from payscore.config import load_settings

TLS_ENV = {
    "PAYSCORE_KAFKA_SECURITY_PROTOCOL": "ssl",
    "PAYSCORE_KAFKA_SSL_CAFILE": "/etc/payscore/ca.pem",
    "PAYSCORE_KAFKA_SSL_CERTFILE": "/etc/payscore/client.pem",
    "PAYSCORE_KAFKA_SSL_KEYFILE": "/etc/payscore/client.key",
    "PAYSCORE_KAFKA_SSL_PASSWORD": "key pass phrase",
}


def test_key_password_and_hostname_check_reach_kafka_python() -> None:
    loaded = load_settings(None, environ=TLS_ENV)
    options = loaded.settings.kafka_options()
    assert options["security_protocol"] == "SSL"
    assert options["ssl_password"] == "key pass phrase"
    assert options["ssl_check_hostname"] is True
    rows = {name: shown for name, shown, _ in loaded.rows()}
    assert rows["kafka_ssl_password"] == "********"
    assert "key pass phrase" not in repr(loaded.settings)

    off = load_settings(None, environ={**TLS_ENV, "PAYSCORE_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    assert off.settings.kafka_options()["ssl_check_hostname"] is False


def test_plaintext_options_carry_no_tls_keys() -> None:
    options = load_settings(None, environ={}).settings.kafka_options()
    assert not any(key.startswith("ssl_") for key in options)


def test_confluent_config_carries_key_password_and_hostname_check() -> None:
    env = {**TLS_ENV, "PAYSCORE_KAFKA_SSL_CHECK_HOSTNAME": "false"}
    config = loadgen.confluent_config(load_settings(None, environ=env).settings, linger_ms=5)
    assert config["ssl.key.password"] == "key pass phrase"
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    checked = loadgen.confluent_config(load_settings(None, environ=TLS_ENV).settings, linger_ms=5)
    assert "ssl.endpoint.identification.algorithm" not in checked  # librdkafka checks by default
