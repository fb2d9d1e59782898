"""Import every module that declares tables, so the metadata is whole (migrations, checks)."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "mvne.infra.jobs",
    "mvne.infra.web.idempotency",
    "mvne.tenants.models",
    "mvne.catalog.models",
    "mvne.esim.models",
    "mvne.provisioning.models",
    "mvne.charging.models",
)


def load_models() -> None:
    # Imported by name: the schema spans every domain, while infra must not depend on them at import time.
    for name in MODEL_MODULES:
        importlib.import_module(name)
