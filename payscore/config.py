"""One settings object for every subcommand.

Values are layered, later layers winning: built-in defaults, a TOML file (``payscore.toml`` in
the working directory, or the file named by ``--config``), environment variables prefixed
``PAYSCORE_``, then command-line flags. The result is frozen and remembers where each value
came from, so ``payscore config`` can explain itself and a bad value names its source.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from payscore.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "PAYSCORE_"
DEFAULT_CONFIG_FILE = "payscore.toml"
MAX_CONFIG_BYTES = 1_000_000


class Settings(BaseModel):
    """The effective configuration. Frozen: build a new one instead of mutating."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(
        "sqlite:///payscore.db",
        description="SQLAlchemy URL of the decisions database (SQLite file by default).",
    )
    database_password: SecretStr | None = Field(
        None, description="Database password, kept out of the URL and out of logs."
    )
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="Comma-separated Kafka bootstrap servers."
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, ...")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for SSL.")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate for SSL.")
    kafka_ssl_keyfile: str | None = Field(None, description="Client key for SSL.")
    kafka_ssl_password: SecretStr | None = Field(
        None, description="Password of the encrypted client key (kafka_ssl_keyfile)."
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="Check that the broker's certificate names the host connected to; "
        "false only for a test broker whose certificate cannot.",
    )
    input_topic: str = Field("payments", description="Topic the consumer reads payments from.")
    dlq_topic: str = Field("payments.dlq", description="Dead-letter topic for bad messages.")
    decisions_topic: str = Field(
        "payments.decisions", description="Topic decisions are published to."
    )
    labels_topic: str = Field("payments.labels", description="Topic of late fraud labels.")
    publish_decisions: bool = Field(
        False,
        description="Also publish every decision to the decisions topic (at-least-once; "
        "costs about half of one consumer's throughput with kafka-python).",
    )
    consumer_group: str = Field("payscore", description="Kafka consumer group id.")
    topic_partitions: int = Field(6, ge=1, le=1000, description="Partitions for new topics.")
    model_path: str = Field(
        "models/payscore-model.joblib", description="Model artifact (digest file beside it)."
    )
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Pinned SHA-256 of the model artifact (from `payscore model show`); a "
        "model that does not match is refused before anything is unpickled.",
    )
    model_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="HMAC key: train signs the model with it, loading refuses a model "
        "without a matching signature. Env PAYSCORE_MODEL_KEY; never logged.",
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Payments per consumer batch.")
    max_wait_ms: int = Field(
        200, ge=1, le=60_000, description="Longest wait in one poll when no message is available."
    )
    writer_process: bool = Field(
        True,
        description="The consumer writes batches from a child process, so that formatting "
        "SQL does not share the scoring thread's GIL; false: from a thread of its own.",
    )
    review_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Score at which a payment goes to REVIEW (model default)."
    )
    decline_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Score at which a payment is DECLINED (model default)."
    )
    velocity_max_payments: int = Field(
        5, ge=1, description="Velocity rule: more than this many payments by one customer..."
    )
    velocity_window_seconds: int = Field(
        3600, ge=1, le=30 * 86400, description="...within this many seconds fires the rule."
    )
    amount_review_limit: float = Field(
        1000.0, gt=0, description="Amount rule: payments above this go at least to REVIEW."
    )
    amount_decline_limit: float = Field(
        10_000.0, gt=0, description="Amount rule: payments above this are DECLINED."
    )
    policy_poll_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="consume checks the stored policy version and the registry's champion at "
        "most this often, at a batch boundary, and applies changed rules and lists "
        "(docs/rules.md) and a promoted or rolled-back model (docs/model.md).",
    )
    explain_top_reasons: int = Field(
        3,
        ge=0,
        le=10,
        description="consume and replay-dlq store this many reasons with every decision "
        "(scored_transactions.explanation; docs/model.md#explanations); 0 turns it off.",
    )
    snapshot_interval_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="consume compacts the topic's feature state into the database at most this "
        "often (in a process of its own), so a restart or rebalance restores it and replays only "
        "what came after; 0: off.",
    )
    snapshot_max_bytes: int = Field(
        1_073_741_824,
        ge=1_048_576,
        le=8_589_934_592,
        description="Largest feature-state snapshot written or read; a larger one is not "
        "saved (or not trusted) and the state is rebuilt from the stored payments.",
    )
    create_topics: bool = Field(
        True,
        description="consume creates a missing dead-letter (and decisions) topic at start, "
        "with the input topic's partitions and size limit; false: it refuses to start.",
    )
    dlq_max_message_bytes: int = Field(
        1_000_000,
        ge=65_536,
        le=100_000_000,
        description="Largest dead letter (key, value and headers); an oversized message keeps "
        "a prefix. Lowered at start to the dead-letter topic's max.message.bytes.",
    )
    max_dlq_attempts: int = Field(
        3, ge=1, le=100, description="Replays before a dead letter is parked."
    )
    cache_dir: str | None = Field(
        None,
        description="Where generated worlds and compiled code are cached (default: "
        "$XDG_CACHE_HOME/payscore or ~/.cache/payscore); never inside the installed package.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_interval_seconds: float = Field(
        10.0, gt=0, description="Seconds between consumer summary lines."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object a line (time, level, logger, message)."
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of Prometheus /metrics, /healthz and /readyz for `consume`, `produce` "
        "and `replay-dlq` (e.g. 9464); unset: off.",
    )
    dashboard_labelling: bool = Field(
        False,
        description="The dashboard lets signed-in analysts label review payments; off by "
        "default, when the page is read-only.",
    )
    dashboard_users: SecretStr | None = Field(
        None,
        description="Analysts who may sign in to label: comma-separated name:bcrypt-hash "
        "entries (make one with `payscore dashboard hash-password NAME`); never plaintext.",
    )
    dashboard_policy_editing: bool = Field(
        False,
        description="Signed-in analysts may also add, disable and enable rules and change "
        "lists on the dashboard's Rules tab (needs dashboard_labelling for the sign-in); off: "
        "the tab is read-only.",
    )

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme or "://" not in value:
            raise ValueError("not a URL; expected e.g. sqlite:///payscore.db or mysql://host/db")
        backend = parts.scheme.split("+")[0]
        if backend not in {"sqlite", "mysql", "mariadb"}:
            raise ValueError(f"unsupported database {backend!r}; use sqlite or mysql")
        if backend != "sqlite" and not parts.hostname:
            raise ValueError("a MySQL URL needs a host")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server.strip()!r} is not host:port")
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _check_protocol(cls, value: str) -> str:
        allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if value.upper() not in allowed:
            raise ValueError(f"must be one of {', '.join(sorted(allowed))}")
        return value.upper()

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("dashboard_users")
    @classmethod
    def _check_users(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_dashboard_users(value.get_secret_value())
        return value

    def kafka_options(self) -> dict[str, Any]:
        """Connection and security options for kafka-python clients (secrets included)."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap_servers.split(",")],
            "security_protocol": self.kafka_security_protocol,
        }
        optional = {
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_sasl_username,
            "sasl_plain_password": (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            ),
            "ssl_cafile": self.kafka_ssl_cafile,
            "ssl_certfile": self.kafka_ssl_certfile,
            "ssl_keyfile": self.kafka_ssl_keyfile,
            "ssl_password": (
                self.kafka_ssl_password.get_secret_value() if self.kafka_ssl_password else None
            ),
        }
        options.update({k: v for k, v in optional.items() if v is not None})
        if self.kafka_security_protocol in {"SSL", "SASL_SSL"}:
            options["ssl_check_hostname"] = self.kafka_ssl_check_hostname
        return options


_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def parse_dashboard_users(value: str) -> dict[str, str]:
    """The analysts of ``dashboard_users`` ("name:hash, ...") as name -> bcrypt hash.

    Only hashes are accepted, so a plaintext password in the config is an error, not a login.
    Names are lower case: the sign-in library compares them in lower case.
    """
    users: dict[str, str] = {}
    for entry in value.split(","):
        if not entry.strip():
            continue
        name, sep, hashed = entry.strip().partition(":")
        if not sep or not _USER_NAME.fullmatch(name):
            raise ValueError(
                "expected name:bcrypt-hash entries separated by commas, names in lower case "
                "(letters, digits, . _ @ -)"
            )
        if not _BCRYPT_HASH.fullmatch(hashed):
            raise ValueError(
                f"the password of {name!r} is not a bcrypt hash; make one with "
                "`payscore dashboard hash-password`"
            )
        if name in users:
            raise ValueError(f"analyst {name!r} is listed twice")
        users[name] = hashed
    return users


SECRET_FIELDS = frozenset(
    name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
)


class LoadedSettings:
    """Settings plus the source of every value ("default", "file <path>", "env NAME", "flag")."""

    def __init__(self, settings: Settings, sources: Mapping[str, str]) -> None:
        self.settings = settings
        self.sources = dict(sources)

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, display value, source) for every setting, secrets masked."""
        out = []
        for name in Settings.model_fields:
            value = getattr(self.settings, name)
            if name in SECRET_FIELDS:
                shown = "********" if value is not None else "(unset)"
            elif name == "database_url":
                shown = mask_url(value)
            else:
                shown = "(unset)" if value is None else str(value)
            out.append((name, shown, self.sources.get(name, "default")))
        return out


def mask_url(url: str) -> str:
    """The URL with its password, if any, replaced by asterisks; the host kept as written
    (an IPv6 host keeps its brackets). The password itself lives in ``database_password``,
    and ``payscore.store.engine.database_url`` sets it into the URL it connects with."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:********@{hostport}").geturl()


def _read_file(path: Path, named_by: str | None) -> dict[str, Any]:
    """The settings in the TOML file; ``named_by`` ("flag", "env ...") when the user named it."""
    if not path.exists():
        if named_by:
            raise ConfigError("--config", named_by, f"file {str(path)!r} does not exist")
        return {}
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError("--config", f"file {path}", "file is larger than 1 MB")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError("--config", f"file {path}", f"cannot read TOML: {e}") from e
    # Accept both top-level keys and a [payscore] table.
    table = data.get("payscore", data)
    if not isinstance(table, dict):
        raise ConfigError("payscore", f"file {path}", "expected a table of settings")
    return table


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the effective settings from defaults, file, environment and flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    from_env = environ.get(f"{ENV_PREFIX}CONFIG")
    named_by = "flag" if config_file is not None else None
    if named_by is None and from_env:
        named_by = f"env {ENV_PREFIX}CONFIG"
    path = Path(config_file or from_env or DEFAULT_CONFIG_FILE)
    for key, value in _read_file(path, named_by).items():
        if key not in Settings.model_fields:
            raise ConfigError(key, f"file {path}", "unknown setting")
        values[key], sources[key] = value, f"file {path}"

    for name in Settings.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in environ:
            values[name], sources[name] = environ[env_name], f"env {env_name}"

    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in Settings.model_fields:
            raise ConfigError(name, "flag", "unknown setting")
        values[name], sources[name] = value, "flag"

    try:
        settings = Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        problem = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(name, sources.get(name, "default"), problem) from None
    return LoadedSettings(settings, sources)
