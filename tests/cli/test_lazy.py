"""``payscore --help`` and ``--version`` import no heavy library; the lazy listing stays true."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from payscore.cli.commands import COMMANDS, load

#: What --help and --version need none of: about 2 s of imports together.
HEAVY = sorted(
    {"kafka", "numba", "numpy", "pandas", "pydantic", "scipy", "sklearn", "sqlalchemy", "streamlit"}
)

_PROBE = """
import json, sys
from payscore.cli.app import app
try:
    app(sys.argv[1:], prog_name="payscore")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(%r))}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []])
def test_help_and_version_import_no_heavy_library(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE % HEAVY, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"payscore {' '.join(argv)} imported {report['heavy']}"
    assert report["code"] in (0, 2, None), done.stderr  # no arguments: help, exit 2 in click 8.2+


#: What a command's own --help needs none of; typer itself imports pydantic.
COMMAND_HEAVY = sorted(set(HEAVY) - {"pydantic"})


@pytest.mark.parametrize("command", ["train", "score", "produce", "demo"])
def test_command_help_imports_no_heavy_library(command: str) -> None:
    """Their heavy imports (scikit-learn, pandas, SQLAlchemy, kafka) wait until they run."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE % COMMAND_HEAVY, command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    assert report["heavy"] == [], f"payscore {command} --help imported {report['heavy']}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_summary_is_the_commands_own_help(name: str) -> None:
    command = load(name)
    assert command.name == name
    first_line = (command.help or "").strip().splitlines()[0]
    assert COMMANDS[name][1] == first_line, f"update the summary of {name} in cli/commands.py"
