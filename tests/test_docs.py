"""Documentation stays true: every command and option has help; README commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from payscore.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_command_and_option_has_help() -> None:
    for name, command in _commands().items():
        assert command.help, f"payscore {name} has no help text"  # type: ignore[attr-defined]
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"payscore {name} {param.opts} has no help text"


def test_readme_commands_are_real_subcommands() -> None:
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"^\s*payscore ([a-z][a-z-]+)", readme, flags=re.M))
    assert used, "README shows no payscore commands"
    unknown = used - set(_commands())
    assert not unknown, f"README uses unknown subcommands: {sorted(unknown)}"


def _readme_command(marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, f"README must mark a command block with <!-- {marker} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_quick_start_then_its_test_command() -> None:
    """CI does what a new user does: the quick start, then the tests, in one environment."""
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    quick, tests = _readme_command("quickstart-command"), _readme_command("test-command")
    assert quick in ci, f".ci/run does not run the README's quick start {quick!r}"
    assert tests in ci, f".ci/run does not run the README's test command {tests!r}"
    assert ci.index(quick) < ci.index(tests), "the quick start must run before the tests"
    # One environment: nothing between the two commands switches interpreters.
    between = ci[ci.index(quick) + 1 : ci.index(tests)]
    assert not between, f".ci/run runs something between the two commands: {between}"


def test_changelog_has_unreleased_section() -> None:
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()


def test_architecture_page_names_existing_modules() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    modules = set(re.findall(r"`(payscore/[\w/]+\.py)`", page))
    assert modules, "architecture page names no modules"
    missing = sorted(m for m in modules if not (ROOT / m).exists())
    assert not missing, f"architecture page names missing modules: {missing}"
