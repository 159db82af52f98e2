"""``payscore train`` registers what it trains; ``payscore models ...`` on SQLite, with one
clear line for each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payscore.cli.app import app
from payscore.core import simulator
from payscore.core.model import load_artifact

runner = CliRunner()


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reg") / "w.csv"
    simulator.write_csv(simulator.generate_world(n_customers=120, n_terminals=240, n_days=60), path)
    return path


def one_error(result, message: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_trained_models_are_registered_and_promoted(csv: Path, tmp_path: Path) -> None:
    env = {"PAYSCORE_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    assert runner.invoke(app, ["initdb"], env=env).exit_code == 0
    versions = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.joblib"
        args = ["train", "--data", str(csv), "-o", str(out)]
        if name == "b":
            args += ["--baseline"]  # another model, another version
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        version = load_artifact(out).version
        assert f"registered model {version} (candidate)" in result.output
        versions.append(version)
    a, b = versions
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0 and a in listed.output and b in listed.output
    assert "candidate" in listed.output

    one_error(runner.invoke(app, ["models", "rollback"], env=env), "no champion to roll back")
    one_error(
        runner.invoke(app, ["models", "promote", "0123abcd"], env=env),
        "unknown model version '0123abcd'",
    )
    result = runner.invoke(app, ["models", "promote", a], env=env)
    assert result.exit_code == 0 and f"model {a} is the champion" in result.output
    result = runner.invoke(app, ["models", "challenger", b], env=env)
    assert result.exit_code == 0 and f"model {b} is the challenger" in result.output
    one_error(runner.invoke(app, ["models", "rollback"], env=env), "replaced no earlier champion")
    result = runner.invoke(app, ["models", "promote", b], env=env)
    assert result.exit_code == 0 and f"{a} retired" in result.output
    result = runner.invoke(app, ["models", "rollback"], env=env)
    assert result.exit_code == 0 and f"model {a} is the champion again" in result.output

    # A tampered file cannot take a role again.
    model = tmp_path / "b.joblib"
    model.write_bytes(model.read_bytes()[:-1])
    one_error(runner.invoke(app, ["models", "promote", b], env=env), "b.joblib")
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert "champion" in listed.output


def test_without_a_database_the_model_is_saved_and_a_note_says_so(
    csv: Path, tmp_path: Path
) -> None:
    env = {"PAYSCORE_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    out = tmp_path / "m.joblib"
    result = runner.invoke(app, ["train", "--data", str(csv), "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "note: not registered: no database at" in result.output
    assert "payscore models register" in result.output
    assert out.is_file() and not (tmp_path / "none.db").exists()
