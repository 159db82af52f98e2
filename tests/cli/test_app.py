"""The command line shell: help, version, config, initdb, and clean errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from payscore import __version__
from payscore.cli.app import app

runner = CliRunner()
SUBCOMMANDS = ["train", "consume", "produce", "initdb", "replay-dlq", "dashboard", "config"]


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    import os

    for name in list(os.environ):
        if name.startswith("PAYSCORE_"):
            monkeypatch.delenv(name)


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"payscore {__version__}"


def test_config_shows_sources_and_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSCORE_DATABASE_PASSWORD", "topsecret")
    monkeypatch.setenv("PAYSCORE_BATCH_SIZE", "250")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert "topsecret" not in result.output
    assert "********" in result.output
    assert "env PAYSCORE_BATCH_SIZE" in result.output


def test_bad_setting_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSCORE_BATCH_SIZE", "-1")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2
    assert "batch_size" in result.output and "PAYSCORE_BATCH_SIZE" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_config_file_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "config"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unknown_flag_is_a_usage_error() -> None:
    result = runner.invoke(app, ["initdb", "--no-such-flag"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_initdb_on_sqlite_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    first = runner.invoke(app, ["initdb", "--database-url", url])
    assert first.exit_code == 0, first.output
    assert "created table scored_transactions" in first.output
    second = runner.invoke(app, ["initdb", "--database-url", url])
    assert second.exit_code == 0
    assert "nothing created" in second.output
    engine = sa.create_engine(url)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("scored_transactions")}
    assert isinstance(columns["amount"]["type"], sa.Numeric)
    assert not isinstance(columns["amount"]["type"], sa.Float)
    unique = sa.inspect(engine).get_unique_constraints("scored_transactions")
    indexes = sa.inspect(engine).get_indexes("scored_transactions")
    unique_cols = [u["column_names"] for u in unique] + [
        i["column_names"] for i in indexes if i["unique"]
    ]
    assert ["transaction_id"] in unique_cols
    engine.dispose()


def test_initdb_unreachable_mysql_is_one_line() -> None:
    result = runner.invoke(app, ["initdb", "--database-url", "mysql://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "error: cannot reach the database at mysql://nobody@127.0.0.1:1/none: "
    ), result.output
    assert "(MySQL error 2002)" in result.output
    assert "(2002," not in result.output  # the driver's text is a detail, not a raw tuple
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_database_errors_share_one_wording(tmp_path: Path) -> None:
    """consume reaches the database through other code than initdb, and reads the same."""
    from payscore.core.model import save_artifact
    from tests.core.test_scoring import tiny_world, train_tiny_model

    model = tmp_path / "model.joblib"
    save_artifact(train_tiny_model(*tiny_world()), model)
    url = "mysql://nobody:secret@127.0.0.1:1/none"
    outputs = [
        runner.invoke(app, ["initdb", "--database-url", url]).output,
        runner.invoke(
            app, ["consume", "--database-url", url, "--model", str(model), "--max-messages", "1"]
        ).output,
    ]
    for output in outputs:
        # A first line warns about the password on the command line (tested below).
        assert output.splitlines()[-1].startswith(
            "error: cannot reach the database at mysql://nobody:********@127.0.0.1:1/none: "
            "Can't connect"
        ), output
        assert "secret" not in output


def test_missing_mysql_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not "invalid setting (from config)": the URL, from the environment, is fine."""
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # makes "import MySQLdb" fail
    monkeypatch.setenv("PAYSCORE_DATABASE_URL", "mysql://nobody@127.0.0.1:1/none")
    result = runner.invoke(app, ["initdb"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: MySQL support (the mysqlclient driver) is not installed; "
        'run: pip install "payscore[mysql]"'
    )


def test_user_text_in_brackets_is_printed_as_typed(tmp_path: Path) -> None:
    """Error messages are rich markup: "[prod]" must not be taken for a style and vanish."""
    result = runner.invoke(app, ["--config", "[prod].toml", "config"])
    assert result.exit_code == 2
    assert "'[prod].toml' does not exist" in result.output

    missing = tmp_path / "no[dir]" / "pay[mysql].db"
    result = runner.invoke(app, ["initdb", "--database-url", f"sqlite:///{missing}"])
    assert result.exit_code == 1
    assert str(missing) in result.output


def test_config_source_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSCORE_CONFIG", "nope.toml")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2
    assert "(from env PAYSCORE_CONFIG)" in result.output


def test_config_table_keeps_bracketed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYSCORE_INPUT_TOPIC", "pay[mysql]")
    result = runner.invoke(app, ["config"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "pay[mysql]" in result.output


@pytest.mark.parametrize("argv", [["--help"], ["replay-dlq", "--help"], ["demo", "--help"]])
def test_help_shows_no_value_type_after_flags(argv: list[str]) -> None:
    result = runner.invoke(app, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "<list[str]>" not in result.output
    assert "--help" in result.output


def test_bench_help_says_confluent_kafka_is_an_extra() -> None:
    result = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert 'pip install "payscore[bench]"' in result.output
    assert "installed by payscore" not in result.output


def test_initdb_upgrades_an_older_database(tmp_path: Path) -> None:
    """A database from before the rollup and newer indexes gets them, back-filled."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert runner.invoke(app, ["initdb", "--database-url", url]).exit_code == 0
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE decision_rollup")
        conn.exec_driver_sql("DROP INDEX ix_scored_status_time")
        for i, status in enumerate(["APPROVED", "APPROVED", "DECLINED"]):
            conn.execute(
                sa.text(
                    "INSERT INTO scored_transactions (transaction_id, customer_id, terminal_id,"
                    " amount, currency, event_time, received_at, scored_at, score, prediction,"
                    " status, reason_codes, model_version) VALUES (:t, 'c', 'x', 1.5, 'EUR',"
                    " '2026-01-01 10:00:00', '2026-01-01 10:00:00', '2026-01-01 10:00:30',"
                    " 0.5, 0, :s, '', 'm')"
                ),
                {"t": f"t{i}", "s": status},
            )
    result = runner.invoke(app, ["initdb", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "created table decision_rollup" in result.output
    assert "created index ix_scored_status_time" in result.output
    assert "back-filled decision_rollup from 3 decisions" in result.output
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT grain, decisions, approved, declined FROM decision_rollup ORDER BY grain"
        ).all()
    assert [tuple(r) for r in rows] == [(60, 3, 2, 1), (3600, 3, 2, 1)]
    engine.dispose()


def test_a_password_on_the_command_line_is_warned_about_once() -> None:
    result = runner.invoke(
        app, ["initdb", "--database-url", "mysql://nobody:hunter%202@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1  # nothing listens on port 1
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "`ps`" in warnings[0] and "PAYSCORE_DATABASE_PASSWORD" in warnings[0]
    assert "database_password" in warnings[0]
    assert "hunter" not in result.output


def test_no_warning_without_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same URL from the environment is not on the command line: no warning either.
    monkeypatch.setenv("PAYSCORE_DATABASE_URL", "mysql://nobody:pw@127.0.0.1:1/none")
    for argv in (
        ["initdb", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
        ["initdb", "--database-url", "mysql://nobody@127.0.0.1:1/none"],
        ["initdb"],
    ):
        result = runner.invoke(app, argv)
        assert "warning:" not in result.output, (argv, result.output)


def test_initdb_names_the_columns_it_adds_to_an_older_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert runner.invoke(app, ["initdb", "--database-url", url]).exit_code == 0
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a payscore from before policy versions made it
        conn.execute(sa.text("ALTER TABLE scored_transactions DROP COLUMN policy_version"))
    engine.dispose()
    result = runner.invoke(app, ["initdb", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "added column scored_transactions.policy_version" in result.output
    assert "nothing created" not in result.output
