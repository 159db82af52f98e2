"""The layered settings: precedence, sources, secrets, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payscore.config import Settings, load_settings
from payscore.errors import ConfigError


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray payscore.toml from the developer's working directory."""
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    loaded = load_settings(None, environ={})
    s = loaded.settings
    assert s.database_url == "sqlite:///payscore.db"
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.input_topic == "payments"
    assert all(source == "default" for _, _, source in loaded.rows())


def test_precedence_file_then_env_then_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('batch_size = 100\ninput_topic = "from-file"\nconsumer_group = "g-file"\n')
    env = {"PAYSCORE_BATCH_SIZE": "200", "PAYSCORE_INPUT_TOPIC": "from-env"}
    loaded = load_settings(cfg, {"batch_size": 300}, environ=env)
    s = loaded.settings
    assert (s.batch_size, s.input_topic, s.consumer_group) == (300, "from-env", "g-file")
    assert loaded.sources["batch_size"] == "flag"
    assert loaded.sources["input_topic"] == "env PAYSCORE_INPUT_TOPIC"
    assert loaded.sources["consumer_group"] == f"file {cfg}"


def test_payscore_table_in_file_is_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[payscore]\ndlq_topic = "dead"\n')
    assert load_settings(cfg, environ={}).settings.dlq_topic == "dead"


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(None, environ={}).settings
    with pytest.raises(ValueError):
        s.batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "setting", "source"),
    [
        ({"PAYSCORE_BATCH_SIZE": "-5"}, "batch_size", "env PAYSCORE_BATCH_SIZE"),
        ({"PAYSCORE_DATABASE_URL": "not a url"}, "database_url", "env PAYSCORE_DATABASE_URL"),
        ({"PAYSCORE_DATABASE_URL": "postgresql://h/db"}, "database_url", "env"),
        ({"PAYSCORE_KAFKA_BOOTSTRAP_SERVERS": "host"}, "kafka_bootstrap_servers", "env"),
        ({"PAYSCORE_KAFKA_SECURITY_PROTOCOL": "TLS9"}, "kafka_security_protocol", "env"),
        ({"PAYSCORE_LOG_LEVEL": "LOUD"}, "log_level", "env"),
    ],
)
def test_bad_values_name_setting_and_source(
    tmp_path: Path, env: dict[str, str], setting: str, source: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ=env)
    assert info.value.setting == setting
    assert info.value.source.startswith(source)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text("batch_sise = 5\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_settings(cfg, environ={})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_broken_toml_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text("batch_size = = 5\n")
    with pytest.raises(ConfigError, match="cannot read TOML"):
        load_settings(cfg, environ={})


def test_secrets_masked_and_password_injected(tmp_path: Path) -> None:
    env = {
        "PAYSCORE_DATABASE_URL": "mysql://payscore@db.example:3306/payscore",
        "PAYSCORE_DATABASE_PASSWORD": "s3cr3t/+",
        "PAYSCORE_KAFKA_SASL_PASSWORD": "kafkapw",
    }
    loaded = load_settings(None, environ=env)
    shown = " ".join(value for _, value, _ in loaded.rows())
    assert "s3cr3t" not in shown and "kafkapw" not in shown
    assert "s3cr3t" not in repr(loaded.settings)
    assert loaded.settings.database_password is not None
    assert loaded.settings.database_password.get_secret_value() == "s3cr3t/+"
    assert loaded.settings.kafka_options()["sasl_plain_password"] == "kafkapw"


def test_password_in_url_is_masked(tmp_path: Path) -> None:
    env = {"PAYSCORE_DATABASE_URL": "mysql://u:hunter2@h:3306/d"}
    rows = dict((n, v) for n, v, _ in load_settings(None, environ=env).rows())
    assert "hunter2" not in rows["database_url"]
    assert rows["database_url"] == "mysql://u:********@h:3306/d"


def test_payscore_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "payscore.toml").write_text('consumer_group = "from-cwd"\n')
    loaded = load_settings(None, environ={})
    assert loaded.settings.consumer_group == "from-cwd"
    assert loaded.sources["consumer_group"] == "file payscore.toml"


def test_readme_settings_table_names_every_setting() -> None:
    """The README's table cannot drift from the settings model: every field, nothing else."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named: set[str] = set()
    for row in rows:
        first_cell = row.split("|")[1]
        # Parenthesised notes may mention other settings ("also publish to `decisions_topic`").
        named |= set(re.findall(r"`([a-z][a-z0-9_]*)`", re.sub(r"\([^)]*\)", "", first_cell)))
    assert rows, "no settings table under ## Configuration"
    fields = set(Settings.model_fields)
    assert not fields - named, f"README settings table lacks {sorted(fields - named)}"
    assert not named - fields, f"README settings table names unknown {sorted(named - fields)}"
