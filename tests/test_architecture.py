"""The architecture stays as written: DESIGN.md's import arrows, and ARCHITECTURE.md's map of the code.

ARCHITECTURE.md names each step of the two main flows by file and function; a rename that
forgets the page fails here, so the page can be trusted with "go to definition".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Which of our top-level packages each one may import (DESIGN.md, "Architecture").
ALLOWED = {
    "schemas": set(),
    "storage": set(),
    "adapters": {"storage", "schemas"},
    "scheduler": {"storage", "adapters", "schemas"},
    "gateway": {"adapters", "storage", "schemas", "scheduler"},
    "openapi": {"gateway", "schemas"},
    "mock_meter_server": {"schemas"},
}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages a module imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_the_arrows_allow(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in sorted((ROOT / package).rglob("*.py"))
        if (bad := imported_packages(path) - ALLOWED[package] - {package})
    }
    assert wrong == {}


def test_the_arrow_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from gateway.app import create_app\n")
    assert imported_packages(module) == {"gateway"}


def defined_names(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and `Class.method` for their methods."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return names


def flow_steps() -> list[tuple[str, str]]:
    """(file, name) of every table row of ARCHITECTURE.md that names a file and functions."""
    steps = []
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[\w/]+\.py`", cells[1]):
            steps.extend((cells[1].strip("`"), name) for name in re.findall(r"`([\w.]+)`", cells[2]))
    return steps


def test_architecture_md_names_its_steps() -> None:
    assert len(flow_steps()) >= 30


@pytest.mark.parametrize(("file", "name"), flow_steps())
def test_each_step_of_architecture_md_is_defined_where_it_says(file: str, name: str) -> None:
    path = ROOT / file
    assert path.is_file(), f"{file} does not exist"
    assert name in defined_names(path), f"{name} is not defined in {file}"
