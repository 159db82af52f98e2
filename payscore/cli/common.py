"""What every command shares: settings from the global options, logging, clean errors."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

if TYPE_CHECKING:  # imported when settings are built: pydantic is not needed for --help
    from payscore.config import LoadedSettings, Settings


def _warn_password_on_command_line(value: str | None) -> str | None:
    """A password in ``--database-url`` is visible to every user of the machine (``ps``, the
    shell history): say so, once, on stderr, and name the place meant for it."""
    if value and urlsplit(value).password is not None:
        err_console.print(
            "warning: --database-url carries a password, which other users can see in `ps`; "
            "set database_password in the settings file or PAYSCORE_DATABASE_PASSWORD instead.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return value


# Options several commands share, defined once so their flags and help stay identical.
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy database URL, without the password (database_password, "
        "env PAYSCORE_DATABASE_PASSWORD). Env: PAYSCORE_DATABASE_URL.",
        callback=_warn_password_on_command_line,
    ),
]
BootstrapServers = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        help="Kafka bootstrap servers. Env: PAYSCORE_KAFKA_BOOTSTRAP_SERVERS.",
    ),
]
#: ``--metrics-port`` of ``consume``, ``produce`` and ``replay-dlq`` (docs/operations.md).
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve Prometheus /metrics, /healthz and /readyz on this port while running "
        "(e.g. 9464 for a consumer). Env: PAYSCORE_METRICS_PORT.",
    ),
]

console = Console()
err_console = Console(stderr=True)


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """The frozen settings for this invocation: file, env, then this command's flags."""
    return loaded_from(ctx, **overrides).settings


def loaded_from(ctx: typer.Context, **overrides: Any) -> LoadedSettings:
    from payscore.config import load_settings
    from payscore.core.cache import ENV as CACHE_ENV

    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    loaded = load_settings(root.obj.get("config_file"), overrides)
    setup_logging(loaded.settings.log_level, loaded.settings.log_format)
    if loaded.settings.cache_dir:
        # Through the environment, so child processes (writer, dashboard) use it too.
        os.environ[CACHE_ENV] = loaded.settings.cache_dir
    return loaded


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Configure logging once, for the whole process, to stderr, as text or JSON lines."""
    root = logging.getLogger()
    if getattr(setup_logging, "_done", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # kafka-python is chatty at INFO about every connection; keep its warnings only.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    setup_logging._done = True  # type: ignore[attr-defined]
