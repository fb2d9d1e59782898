"""The layers hold: no module imports a folder above its own, late imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lowest first: a folder may import only the folders before it in this list.
LAYERS = ("infra", "tenants", "catalog", "esim", "provisioning", "charging", "platform")
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an `import` or `from ... import` names, anywhere in the tree."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from mvne import charging` names the domain in the imported names.
            if node.module == "mvne":
                found.extend((node.lineno, f"mvne.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
        }:
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def upward_imports(folder: str) -> list[str]:
    broken = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for lineno, module in imported_modules(ast.parse(path.read_text(), filename=str(path))):
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "mvne" and parts[1] in RANK and RANK[parts[1]] > RANK[folder]:
                broken.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    return broken


@pytest.mark.parametrize("folder", LAYERS)
def test_no_import_runs_back_up_the_stack(folder: str) -> None:
    assert upward_imports(folder) == []


def test_the_check_sees_late_and_dynamic_imports() -> None:
    source = (
        "def f():\n    from mvne.platform.app import create_app\n"
        "import importlib\nimportlib.import_module('mvne.charging.actors')\n"
        "from mvne import provisioning\n"
    )
    names = [module for _, module in imported_modules(ast.parse(source))]

    assert "mvne.platform.app" in names
    assert "mvne.charging.actors" in names
    assert "mvne.provisioning" in names
