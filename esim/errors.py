"""Errors of the SIM inventory."""

from __future__ import annotations

from mvne.infra.errors import Conflict, NotFound


class SimNotFound(NotFound):
    code = "sim_not_found"


class SimPoolExhausted(Conflict):
    code = "sim_pool_exhausted"


class EsimNotReady(Conflict):
    """The line has no eSIM profile released yet (it is still being activated): no activation code to show."""

    code = "esim_not_ready"


class NotificationRefused(Exception):
    """An ES2+ download notification that must not be applied, with its SGP.22 status code."""

    def __init__(self, subject_code: str, reason_code: str, message: str) -> None:
        super().__init__(f"{subject_code}/{reason_code} {message}")
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message
