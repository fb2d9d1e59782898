"""Domain errors: each has a stable code and an HTTP status, mapped to problem+json in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request cannot be completed"

    def __init__(
        self, detail: str, *, errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        # Fields the answer carries besides the problem (`Retry-After` on a locked login).
        self.headers = headers or {}


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict with the current state"


class InvalidInput(DomainError):
    code = "validation_failed"
    status = 422
    title = "Invalid input"


class Unavailable(DomainError):
    code = "upstream_unavailable"
    status = 503
    title = "A system we depend on is unavailable"
