"""Runtimes of a test's own, built without disturbing the suite-wide runtime of the process.

`Runtime.build` makes the new runtime the process's current one and its broker Dramatiq's global
broker. Tests that need a second runtime (their own database, workers they control) build it here:
both globals are put back as they were as soon as it is built, and again when it is stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dramatiq
import dramatiq.broker

from mvne.infra.runtime import Runtime, current_runtime_or_none, set_runtime
from mvne.infra.settings import Settings
from mvne.platform.wiring import build_runtime


@contextlib.contextmanager
def process_globals_kept() -> Iterator[None]:
    """Put back the current runtime and Dramatiq's global broker when the block ends."""
    saved_runtime = current_runtime_or_none()
    # Read the attribute: `dramatiq.get_broker()` would make a RabbitMQ broker up when none is set.
    saved_broker = dramatiq.broker.global_broker
    try:
        yield
    finally:
        set_runtime(saved_runtime)
        dramatiq.broker.global_broker = saved_broker


@contextlib.contextmanager
def side_runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on `settings` that never becomes the process's current one; stopped at the end."""
    with process_globals_kept():
        rt = build_runtime(settings)
    try:
        yield rt
    finally:
        with process_globals_kept():
            rt.stop()
