"""The JSON log format: one object a line, and secrets stay masked."""

from __future__ import annotations

import json
import logging
import sys

from payscore.cli.common import JsonFormatter
from payscore.config import Settings


def _record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord(
        "payscore.stream.consumer", logging.INFO, __file__, 1, msg, args, exc_info
    )  # type: ignore[arg-type]


def test_json_line_has_time_level_logger_message() -> None:
    line = JsonFormatter().format(_record("decided=%d", 5))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "payscore.stream.consumer"
    assert entry["message"] == "decided=5"
    assert entry["time"].endswith("+00:00")


def test_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = JsonFormatter().format(_record("failed", exc_info=sys.exc_info()))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_settings_repr_does_not_show_a_secret() -> None:
    secret = "hunter2-very-secret"
    settings = Settings(database_password=secret, kafka_sasl_password=secret, model_key=secret)
    line = JsonFormatter().format(_record("settings: %r", settings))
    assert secret not in line
    assert "database_password" in json.loads(line)["message"]
