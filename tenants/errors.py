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


class ApiClientNotFound(NotFound):
    code = "api_client_not_found"


class ApiClientRevoked(Conflict):
    code = "api_client_revoked"


class InvalidSecretOverlap(InvalidInput):
    code = "invalid_secret_overlap"


class LegalProfileNotFound(NotFound):
    code = "legal_profile_not_found"


class InvalidIdentifier(InvalidInput):
    """A VAT id, registration number, IBAN, BIC, locale or phone number that does not check out."""

    code = "invalid_identifier"


class TenantAlreadySuspended(Conflict):
    code = "tenant_already_suspended"


class TenantNotSuspended(Conflict):
    """Resuming or offboarding a tenant that is not suspended (an operator suspends it first)."""

    code = "tenant_not_suspended"


class TenantOffboarded(Conflict):
    """The tenant is being offboarded, or was: it can no longer be suspended, resumed or offboarded again."""

    code = "tenant_offboarded"


class WeakPassword(InvalidInput):
    """A password that is too short, too long, or guessable (zxcvbn)."""

    code = "weak_password"


class ApiClientIsPublic(Conflict):
    """A secret operation on a public client (an app): it has no secret to rotate."""

    code = "api_client_is_public"


class AppNotFound(NotFound):
    code = "app_not_found"


class InvalidRedirectUri(InvalidInput):
    """A redirect URI that is not https, loopback http, or a private-use scheme; or that has a fragment."""

    code = "invalid_redirect_uri"


class WrongPassword(InvalidInput):
    code = "wrong_password"


class AccountLocked(Conflict):
    """Too many wrong passwords or codes in a row: sign-in and password changes wait until the lock ends."""

    code = "account_locked"
