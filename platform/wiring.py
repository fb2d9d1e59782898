"""What the platform hands the layers below: every domain's actors, before a runtime binds them."""

from __future__ import annotations

import importlib

from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings

# Each module registers its jobs (and periodic tasks) on import; infra knows none of them by name.
ACTOR_MODULES = (
    "mvne.infra.mail",
    "mvne.tenants.actors",
    "mvne.esim.actors",
    "mvne.provisioning.actors",
    "mvne.charging.actors",
)


def load_actor_modules() -> None:
    """Import every module that declares jobs, so the registry is complete in this process."""
    for name in ACTOR_MODULES:
        importlib.import_module(name)


def build_runtime(settings: Settings) -> Runtime:
    """The process's runtime, with every domain's jobs bound to its broker."""
    load_actor_modules()
    return Runtime.build(settings)
