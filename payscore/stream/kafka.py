"""Kafka client factories: the one place payscore builds kafka-python clients.

Every factory takes the frozen settings (bootstrap servers, SASL/SSL passthrough from
``Settings.kafka_options()``), fails fast with ``ServiceUnavailable`` when the broker cannot be
reached instead of hanging, and never logs the options (they may hold a SASL password).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import (
    AuthorizationError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
)

from payscore.config import Settings
from payscore.errors import ConfigError, PayscoreError, ServiceUnavailable

log = logging.getLogger(__name__)

#: How long a client may try to reach the first broker before we give up (seconds).
CONNECT_TIMEOUT_S = 5.0
#: Bounded request timeout, so a dead broker surfaces as an error, not a hang.
REQUEST_TIMEOUT_MS = 15_000
#: Small batching delay: a few ms of latency buys much better producer throughput.
LINGER_MS = 10

_KAFKA_MAJOR = int(kafka.__version__.split(".")[0])


def quiet_client_logs(log_level: str) -> None:
    """Keep kafka-python's per-attempt connection errors off stderr unless debugging.

    kafka-python logs every failed reconnect at ERROR; payscore reports the outcome itself
    (one ``ServiceUnavailable`` line), so the library's retries are noise for a CLI user.
    """
    if log_level.upper() != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


class _BootstrapQuiet:
    """Silences the ``kafka`` logger while clients bootstrap, for nested and parallel callers.

    kafka-python logs every failed bootstrap attempt at ERROR and WARNING (17 lines for one
    unreachable broker); the factories report the outcome as one ``ServiceUnavailable``. Once a
    client is connected the logger is back at its level, so a long-running consumer still logs
    a broker lost later. The level is restored by the last caller out, whatever the order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = logging.NOTSET
        self._saved_manager: tuple[int, bool] = (logging.NOTSET, True)

    @contextmanager
    def __call__(self, settings: Settings) -> Iterator[None]:
        if settings.log_level == "DEBUG":
            yield
            return
        logger = logging.getLogger("kafka")
        manager = logging.getLogger(_MANAGER_LOGGER)
        with self._lock:
            if self._depth == 0:
                self._saved = logger.level
                logger.setLevel(logging.CRITICAL)
                # Still let the manager's WARNINGs be made, for _BootstrapFailures only.
                self._saved_manager = (manager.level, manager.propagate)
                manager.setLevel(logging.WARNING)
                manager.propagate = False
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    logger.setLevel(self._saved)
                    manager.setLevel(self._saved_manager[0])
                    manager.propagate = self._saved_manager[1]


_bootstrap_quietly = _BootstrapQuiet()
_MANAGER_LOGGER = "kafka.net.manager"


class _BootstrapFailures(logging.Handler):
    """The last reason kafka-python gave for a failed bootstrap attempt.

    A refused SASL login or a certificate that fails verification is retried until the
    bootstrap timeout, then reported only as "Unable to bootstrap"; the cause is in a log
    record of ``kafka.net.manager`` (its exception is the record's argument), kept here.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: BaseException | None = None
        self.refused: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            # The last record repeats the final "Unable to bootstrap"; the cause came before.
            if isinstance(arg, BaseException) and "Unable to bootstrap" not in str(arg):
                self.last = arg
                if isinstance(arg, (SaslAuthenticationFailedError, AuthorizationError)):
                    self.refused = arg

    @contextmanager
    def watching(self) -> Iterator[_BootstrapFailures]:
        logger = logging.getLogger(_MANAGER_LOGGER)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


def describe_servers(settings: Settings) -> str:
    """The bootstrap address for messages (host:port list; holds no secret)."""
    return ",".join(s.strip() for s in settings.kafka_bootstrap_servers.split(","))


def _connect_options(client_cls: type, timeout_s: float) -> dict[str, Any]:
    # kafka-python 3 bounds the first metadata fetch with bootstrap_timeout_ms; 2.x bounds the
    # version probe with api_version_auto_timeout_ms. Pass whichever this version knows.
    known = getattr(client_cls, "DEFAULT_CONFIG", {})
    timeout_ms = int(timeout_s * 1000)
    if "bootstrap_timeout_ms" in known:
        return {"bootstrap_timeout_ms": timeout_ms}
    if "api_version_auto_timeout_ms" in known:
        return {"api_version_auto_timeout_ms": timeout_ms}
    return {}


def _supported(client_cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """Drop our optional defaults that this kafka-python version does not know."""
    known = getattr(client_cls, "DEFAULT_CONFIG", None)
    if known is None:
        return dict(options)
    return {k: v for k, v in options.items() if k in known}


def _build(client_cls: type, settings: Settings, options: dict[str, Any]) -> Any:
    if options.get("ssl_certfile") and options.get("ssl_password") is None:
        # Without a password OpenSSL asks for an encrypted key's on the terminal, at every
        # reconnect; an empty one makes such a key a load error instead (a plain key ignores it).
        options = {**options, "ssl_password": ""}
    failures = _BootstrapFailures()
    try:
        with _bootstrap_quietly(settings), failures.watching():
            return client_cls(**options)
    except KafkaConfigurationError as e:
        raise ConfigError("kafka", "settings", str(e)) from e
    except (KafkaError, OSError) as e:
        servers = describe_servers(settings)
        user = settings.kafka_sasl_username
        who = f" of user {user!r}" if user else ""
        if failures.refused is not None:
            raise ServiceUnavailable(
                f"Kafka at {servers} refused the login{who}: {_reason(failures.refused)}"
            ) from e
        if settings.kafka_sasl_mechanism and failures.last and _disconnected(failures.last):
            # kafka-python 3.0 drops the broker's refusal when the broker's close arrives in
            # the same read (often: the broker sends both after a delay); only "socket
            # disconnected" is left, and a SASL listener closes like that on a failed login.
            raise ServiceUnavailable(
                f"Kafka at {servers} closed the connection before the login{who} completed "
                "(a wrong password, user name or kafka_sasl_mechanism does this): "
                f"{_reason(failures.last)}"
            ) from e
        last = f" (last attempt: {_reason(failures.last)})" if failures.last is not None else ""
        raise ServiceUnavailable(f"cannot reach Kafka at {servers}: {_reason(e)}{last}") from e


def _disconnected(error: BaseException) -> bool:
    return isinstance(error, KafkaConnectionError) and "socket disconnected" in str(error)


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer of raw key/value bytes: acks=all, idempotent where supported, short linger."""
    defaults = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": LINGER_MS,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "delivery_timeout_ms": 2 * REQUEST_TIMEOUT_MS + LINGER_MS,
        "max_block_ms": REQUEST_TIMEOUT_MS,
        "max_in_flight_requests_per_connection": 5,
        "client_id": "payscore-producer",
        **_connect_options(KafkaProducer, CONNECT_TIMEOUT_S),
    }
    options = {**_supported(KafkaProducer, defaults), **settings.kafka_options(), **overrides}
    return _build(KafkaProducer, settings, options)


def make_consumer(settings: Settings, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer of raw bytes with manual commits (we commit after the database write).

    Subscribe or assign afterwards; ``group_id=None`` gives a group-less reader.
    """
    defaults = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": max(REQUEST_TIMEOUT_MS, 31_000),
        "client_id": "payscore-consumer",
        **_connect_options(KafkaConsumer, CONNECT_TIMEOUT_S),
    }
    options = {**_supported(KafkaConsumer, defaults), **settings.kafka_options(), **overrides}
    return _build(KafkaConsumer, settings, options)


def make_admin(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> KafkaAdminClient:
    """An admin client; connects (and fails fast) at construction."""
    defaults = {
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "client_id": "payscore-admin",
        **_connect_options(KafkaAdminClient, timeout_s),
    }
    options = {**_supported(KafkaAdminClient, defaults), **settings.kafka_options()}
    return _build(KafkaAdminClient, settings, options)


def check_broker(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise ``ServiceUnavailable`` within about ``timeout_s`` if no broker answers."""
    admin = make_admin(settings, timeout_s=timeout_s)
    try:
        with _bootstrap_quietly(settings):
            admin.list_topics()
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {describe_servers(settings)}: {_reason(e)}"
        ) from e
    finally:
        _close(admin)


def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    partitions: int | None = None,
    timeout_s: float = 30.0,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing topics, then wait until every partition has a leader.

    Brokers may run with ``auto.create.topics.enable=false``, so whoever writes a topic first
    creates it here. Topics that already exist are left as they are (their partition count is
    not changed). ``configs`` (e.g. ``max.message.bytes``) apply to created topics only.
    Returns the names that were created.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    count = partitions if partitions is not None else settings.topic_partitions
    if count < 1:
        raise ConfigError("partitions", "flag", "must be at least 1")
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            _create(admin, missing, count, configs)
            log.info("created topics %s with %d partitions", ", ".join(missing), count)
        _wait_for_leaders(settings, admin, wanted, timeout_s)
        return missing
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot create topics on Kafka at {describe_servers(settings)}: {_reason(e)}"
        ) from e
    finally:
        _close(admin)


def _create(
    admin: KafkaAdminClient,
    names: list[str],
    partitions: int,
    configs: Mapping[str, str] | None = None,
) -> None:
    # replication_factor -1 = the broker's default.replication.factor (brokers >= 2.4).
    request: Any
    if _KAFKA_MAJOR >= 3:
        options: dict[str, Any] = {"num_partitions": partitions, "replication_factor": -1}
        if configs:
            options["configs"] = dict(configs)
        request = {n: dict(options) for n in names}
    else:  # pragma: no cover - kafka-python 2.x
        from kafka.admin import NewTopic

        request = [NewTopic(n, partitions, -1, topic_configs=dict(configs or {})) for n in names]
    for attempt in range(2):
        try:
            admin.create_topics(request)
            return
        except TopicAlreadyExistsError:
            return  # someone else created it at the same moment: fine
        except KafkaError as e:
            if attempt or not getattr(e, "retriable", False):
                raise
            time.sleep(0.5)


def _wait_for_leaders(
    settings: Settings, admin: KafkaAdminClient, names: list[str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    pending: dict[str, str] = {}
    while True:
        try:
            described = admin.describe_topics(names)
        except KafkaError as e:
            described, pending = [], {n: _reason(e) for n in names}
        by_name = {t.get("name", t.get("topic")): t for t in described}
        pending = {n: why for n in names if (why := _not_ready(by_name.get(n))) is not None}
        if not pending:
            return
        if time.monotonic() >= deadline:
            detail = "; ".join(f"{n}: {why}" for n, why in pending.items())
            raise ServiceUnavailable(
                f"topics on Kafka at {describe_servers(settings)} not ready after "
                f"{timeout_s:.0f} s ({detail})"
            )
        time.sleep(0.1)


def _not_ready(topic: Mapping[str, Any] | None) -> str | None:
    if topic is None:
        return "missing from metadata"
    if topic.get("error_code", 0):
        return f"error code {topic['error_code']}"
    parts = topic.get("partitions") or []
    if not parts:
        return "no partitions yet"
    for p in parts:
        leader = p.get("leader_id", p.get("leader", -1))
        if p.get("error_code", 0) or leader is None or leader < 0:
            return f"partition {p.get('partition_index', p.get('partition'))} has no leader"
    return None


def partition_count(settings: Settings, topic: str) -> int:
    """Number of partitions of an existing topic; 0 when the topic does not exist."""
    admin = make_admin(settings)
    try:
        described = admin.describe_topics([topic])
    except KafkaError as e:
        raise ServiceUnavailable(
            f"cannot describe topic {topic!r} on Kafka at {describe_servers(settings)}: "
            f"{_reason(e)}"
        ) from e
    finally:
        _close(admin)
    for t in described:
        if t.get("name", t.get("topic")) == topic and not t.get("error_code", 0):
            return len(t.get("partitions") or [])
    return 0


def max_message_bytes(settings: Settings, topic: str) -> int | None:
    """The topic's effective ``max.message.bytes``, or None when the broker does not say
    (no such topic, not authorized to describe its configs, an older client)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = make_admin(settings)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
        described = admin.describe_configs([resource], config_filter="all")
        entry = described["topic"][topic]["max.message.bytes"]
        return int(entry["value"])
    except Exception as e:  # informational: the caller keeps its own limit
        log.debug("cannot read max.message.bytes of %s: %s", topic, e)
        return None
    finally:
        _close(admin)


def prepare_output_topics(settings: Settings) -> int:
    """Make sure the topics the consumer writes exist; return the dead-letter size budget.

    A missing dead-letter (or decisions) topic is created with the input topic's partition
    count and ``max.message.bytes`` when ``create_topics`` allows, else the consumer refuses
    to start: on a broker without auto-creation, every dead letter would otherwise wait for
    a topic that never comes. The budget is ``dlq_max_message_bytes``, lowered to what the
    dead-letter topic accepts.
    """
    wanted = [settings.dlq_topic]
    if settings.publish_decisions:
        wanted.append(settings.decisions_topic)
    missing = [t for t in wanted if partition_count(settings, t) == 0]
    if missing:
        if not settings.create_topics:
            raise PayscoreError(
                f"topic {missing[0]!r} does not exist; create it (with the input topic's "
                f"partitions and max.message.bytes) or set create_topics = true"
            )
        partitions = partition_count(settings, settings.input_topic) or None
        limit = max_message_bytes(settings, settings.input_topic)
        configs = {"max.message.bytes": str(limit)} if limit else None
        ensure_topics(settings, missing, partitions, configs=configs)
        log.info("created topic(s) %s", ", ".join(missing))
    accepted = max_message_bytes(settings, settings.dlq_topic)
    budget = settings.dlq_max_message_bytes
    return min(budget, accepted) if accepted else budget


def topic_exists(settings: Settings, topic: str) -> bool | None:
    """True/False, or None when the broker cannot be asked (an outage, not an answer)."""
    try:
        return partition_count(settings, topic) > 0
    except PayscoreError:
        return None


def group_settled(consumer: Any) -> bool:
    """False while ``consumer``'s place in its group is being negotiated: a rejoin is due (a
    heartbeat answered "rebalancing", or the topic metadata changed since the assignment) or a
    JoinGroup/SyncGroup round is in flight. No public kafka-python API says so, so this reads
    its coordinator; a client without one (a test double, a group-less reader) is settled.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return True
    try:
        return bool(coordinator.stable()) and not coordinator.need_rejoin()
    except Exception:  # another kafka-python version: fall back to "settled" (the old behaviour)
        log.debug("cannot read the group coordinator's state", exc_info=True)
        return True


def group_gap(settings: Settings, group: str, topic: str, partitions: set[int]) -> str | None:
    """Why a member of ``group`` may rightly hold none of ``topic``'s partitions, or not.

    None when the group is stable and its members own every partition (more consumers than
    partitions); otherwise a short description of what looks wrong, for the log.
    """
    try:
        admin = make_admin(settings, timeout_s=5.0)
    except Exception as e:
        return f"cannot reach the broker to describe the group: {e}"
    try:
        info = admin.describe_groups([group]).get(group) or {}
    except Exception as e:
        return f"cannot describe the group: {e}"
    finally:
        _close(admin)
    state = info.get("group_state") or "unknown"
    members = info.get("members") or ()
    owned: set[int] = set()
    for member in members:
        assignment = member.get("member_assignment")
        if not isinstance(assignment, dict):
            continue
        for tp in assignment.get("assigned_partitions") or ():
            if tp.get("topic") == topic:
                owned.update(tp.get("partitions") or ())
    if state == "Stable" and partitions and partitions <= owned:
        return None
    return (
        f"group state {state}, {len(owned & partitions)} of {len(partitions)} partitions "
        f"of {topic} owned by its {len(members)} members"
    )


def _close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # closing is best effort; the real error (if any) is already raised
        log.debug("error while closing a Kafka client", exc_info=True)
