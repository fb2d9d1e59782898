"""The layers hold: no module imports a folder above its own, late imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lowest first: a folder may import only the folders before it in this list.
LAYERS = ("infra", "tenants", "catalog", "esim", "provisioning", "charging", "platform")
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def _is_dynamic_import(call: ast.Call) -> bool:
    """`importlib.import_module("mvne...")` or `__import__("mvne...")` with a literal name."""
    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
    literal = bool(call.args) and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
    return name in {"import_module", "__import__"} and literal


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
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            found.append((node.lineno, str(node.args[0].value)))  # type: ignore[attr-defined]
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


def test_infra_names_no_domain_even_in_a_string() -> None:
    domains = [name for name in LAYERS if name != "infra"]
    named = []
    for path in sorted((ROOT / "infra").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named += [f"{path.relative_to(ROOT)}: {d}" for d in domains if f"mvne.{d}." in node.value]
    assert named == []


def test_every_domain_models_module_is_declared_for_infra_to_find() -> None:
    from mvne.infra.models import model_modules

    on_disk = {f"mvne.{path.parent.name}.models" for path in ROOT.glob("*/models.py") if path.parent.name != "infra"}
    assert on_disk <= set(model_modules())


def test_the_migrations_have_one_head_and_one_root() -> None:
    from alembic.script import ScriptDirectory

    from mvne.infra.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1, scripts.get_heads()
    assert len(scripts.get_bases()) == 1, scripts.get_bases()
