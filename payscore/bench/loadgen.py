"""The paced run's load generator: the program that stands in for the payment gateways.

Gateways run on machines of their own. Here the load generator shares the benchmark's two
cores with the consumer, the broker and MariaDB, so what it costs is taken from the system it
measures. kafka-python spends about 2 ms of CPU per produce request, whatever its size: at
1,000 payments/s with a 5 ms linger that is 45 % of one core. librdkafka (the C client behind
``confluent-kafka``, which Java-like gateways resemble) sends the same load for about 11 %.

``auto`` picks ``confluent-kafka`` when it is installed (``pip install "payscore[bench]"``) and
kafka-python otherwise; the report names the generator it used. Both partition keys with
murmur2, like Kafka's Java client, so a customer's payments reach the same partition whichever
sends them (a test holds this).
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Any, Protocol

from payscore.config import Settings
from payscore.errors import ConfigError, MissingExtra, ServiceUnavailable

AUTO, CONFLUENT, KAFKA_PYTHON = "auto", "confluent-kafka", "kafka-python"
LOAD_GENERATORS = (AUTO, CONFLUENT, KAFKA_PYTHON)
_METADATA_TIMEOUT_S = 10.0


class LoadSender(Protocol):
    def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    def flush(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


def confluent_available() -> bool:
    return importlib.util.find_spec("confluent_kafka") is not None


def resolve(choice: str) -> str:
    """The generator ``choice`` stands for; a clear error if it cannot be used here."""
    if choice not in LOAD_GENERATORS:
        raise ConfigError(
            "load generator", "--load-generator", f"must be one of {', '.join(LOAD_GENERATORS)}"
        )
    if choice == AUTO:
        return CONFLUENT if confluent_available() else KAFKA_PYTHON
    if choice == CONFLUENT and not confluent_available():
        # Not a bad setting: the choice is valid, the optional client is missing.
        raise MissingExtra("confluent-kafka (the librdkafka load generator)", "bench")
    return choice


def describe(name: str) -> str:
    """``name`` with its installed version, for the report."""
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def open_sender(settings: Settings, name: str, topic: str, linger_ms: int) -> LoadSender:
    """A producer of ``name`` (resolved) with the topic's metadata already fetched."""
    if name == CONFLUENT:
        return _ConfluentSender(settings, topic, linger_ms)
    return _KafkaPythonSender(settings, topic, linger_ms)


class _KafkaPythonSender:
    def __init__(self, settings: Settings, topic: str, linger_ms: int) -> None:
        from payscore.stream.kafka import make_producer

        self._producer = make_producer(settings, linger_ms=linger_ms)
        # The first send() would otherwise wait for the metadata while the pacer's clock runs.
        self._producer.partitions_for(topic)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.send(topic, key=key, value=value)

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)


class _ConfluentSender:
    def __init__(self, settings: Settings, topic: str, linger_ms: int) -> None:
        from confluent_kafka import Producer

        self._failed: list[str] = []
        self._producer = Producer(confluent_config(settings, linger_ms))
        try:
            self._producer.list_topics(topic, timeout=_METADATA_TIMEOUT_S)
        except Exception as e:  # KafkaException: no broker answered
            raise ServiceUnavailable(f"load generator cannot reach Kafka: {e}") from e

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.produce(topic, value=value, key=key, on_delivery=self._delivered)
        self._producer.poll(0)  # run delivery callbacks; never blocks

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._failed.append(str(error))

    def flush(self, timeout_s: float) -> None:
        left = self._producer.flush(timeout_s)
        if left or self._failed:
            reason = self._failed[0] if self._failed else "flush timed out"
            raise ServiceUnavailable(
                f"load generator: {left} payments unsent, {len(self._failed)} failed ({reason})"
            )

    def close(self) -> None:
        self._producer.flush(5)


def confluent_config(settings: Settings, linger_ms: int) -> dict[str, Any]:
    """librdkafka settings equivalent to ``make_producer``'s (secrets stay in process)."""
    options = settings.kafka_options()
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(options["bootstrap_servers"]),
        "security.protocol": options["security_protocol"],
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "partitioner": "murmur2_random",  # the Java client's (and kafka-python's) for keys
        "client.id": "payscore-bench-load",
    }
    renamed = {
        "sasl_mechanism": "sasl.mechanism",
        "sasl_plain_username": "sasl.username",
        "sasl_plain_password": "sasl.password",
        "ssl_cafile": "ssl.ca.location",
        "ssl_certfile": "ssl.certificate.location",
        "ssl_keyfile": "ssl.key.location",
        "ssl_password": "ssl.key.password",
    }
    config.update({renamed[k]: v for k, v in options.items() if k in renamed})
    if options.get("ssl_check_hostname") is False:
        config["ssl.endpoint.identification.algorithm"] = "none"
    return config
