"""Import every module that declares tables, so the metadata is whole (migrations, checks, tenant scoping)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

# Infra's own tables; the domains declare theirs as entry points (pyproject `mvne.models`), so infra
# finds the whole schema without knowing which domains exist.
INFRA_MODEL_MODULES = ("mvne.infra.jobs", "mvne.infra.mail", "mvne.infra.web.idempotency", "mvne.infra.web.audit")
ENTRY_POINT_GROUP = "mvne.models"


def model_modules() -> list[str]:
    declared = sorted(ep.value for ep in entry_points(group=ENTRY_POINT_GROUP))
    if not declared:
        raise RuntimeError(f"no {ENTRY_POINT_GROUP!r} entry points: install the package (make install)")
    return [*INFRA_MODEL_MODULES, *declared]


def load_models() -> None:
    for name in model_modules():
        importlib.import_module(name)
