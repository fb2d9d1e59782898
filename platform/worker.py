"""Entry point of `dramatiq` worker processes: builds the runtime, which binds every actor to the broker."""

from __future__ import annotations

from mvne.infra.logging import configure_logging
from mvne.infra.settings import load_settings
from mvne.platform.wiring import build_runtime

_settings = load_settings()
configure_logging(_settings.log_level, _settings.log_format)
runtime = build_runtime(_settings)
broker = runtime.broker
