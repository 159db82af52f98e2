"""One exception root, so the CLI can turn any user-facing failure into one clean line."""

from __future__ import annotations


class PayscoreError(Exception):
    """Base of every error payscore raises on purpose. The CLI prints it and exits 1."""

    exit_code = 1


class ConfigError(PayscoreError):
    """A setting has a bad value. Names the setting and where the value came from."""

    exit_code = 2

    def __init__(self, setting: str, source: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting!r} (from {source}): {problem}")
        self.setting = setting
        self.source = source
        self.problem = problem


class MissingExtra(PayscoreError):
    """An optional part of payscore is needed and not installed (e.g. the MySQL driver)."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f'{what} is not installed; run: pip install "payscore[{extra}]"')
        self.extra = extra


class ModelError(PayscoreError):
    """A model artifact is missing, tampered with, or incompatible."""


class ServiceUnavailable(PayscoreError):
    """Kafka or the database cannot be reached."""


class InputError(PayscoreError):
    """A user-supplied file or argument cannot be used."""
