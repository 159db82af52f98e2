"""The core stays pure: no module in payscore/core imports Kafka, a database, a UI or a CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import payscore.core

CORE = Path(payscore.core.__file__).parent
BANNED = {"kafka", "sqlalchemy", "streamlit", "typer", "rich", "click", "MySQLdb", "pymysql"}
MODULES = sorted(CORE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name the file imports, however it does it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in {
            "__import__",
            "import_module",
        }:
            if node.args and isinstance(node.args[0], ast.Constant):
                modules.add(str(node.args[0].value))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                modules.add(str(node.args[0].value))
    return modules


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def test_core_has_modules() -> None:
    names = {p.name for p in MODULES}
    assert {"schema.py", "rules.py", "decision.py", "scoring.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_framework(path: Path) -> None:
    assert not imported_roots(path) & BANNED


def test_core_does_not_import_edge_packages() -> None:
    edges = ("payscore.stream", "payscore.store", "payscore.cli", "payscore.dashboard")
    for path in MODULES:
        for name in imported_modules(path):
            assert not name.startswith(edges), f"{path.name} imports {name}"


def test_the_check_catches_a_banned_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom kafka import KafkaConsumer\nimport sqlalchemy.orm\n")
    assert imported_roots(sample) & BANNED == {"kafka", "sqlalchemy"}
