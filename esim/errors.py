"""Errors of the SIM inventory."""

from __future__ import annotations

from mvne.infra.errors import Conflict, NotFound


class SimNotFound(NotFound):
    code = "sim_not_found"


class SimPoolExhausted(Conflict):
    code = "sim_pool_exhausted"
