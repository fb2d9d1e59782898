"""Errors of the tenants domain."""

from __future__ import annotations

from mvne.infra.errors import Conflict, InvalidInput, NotFound


class TenantNotFound(NotFound):
    code = "tenant_not_found"


class TenantSlugTaken(Conflict):
    code = "tenant_slug_taken"


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class CustomerEmailTaken(Conflict):
    code = "customer_email_taken"


class InvalidScopes(InvalidInput):
    code = "invalid_scopes"
