"""Errors of the tenants domain."""

from __future__ import annotations

from mvne.infra.errors import Conflict, DomainError, InvalidInput, NotFound


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


class BrandNotFound(NotFound):
    code = "brand_not_found"


class LogoNotFound(NotFound):
    code = "logo_not_found"


class LogoNotAnImage(InvalidInput):
    """A logo that is not a PNG, JPEG or WebP image (SVG is refused: it can carry scripts)."""

    code = "logo_not_an_image"


class LogoTooLarge(DomainError):
    code = "logo_too_large"
    status = 413
    title = "Logo too large"


class InvalidLanguage(InvalidInput):
    code = "invalid_language"


class InvalidTaxRate(InvalidInput):
    code = "invalid_tax_rate"


class CountryLocked(Conflict):
    """The country is fixed at sign-up: the tenant's number block is of that country."""

    code = "country_locked"


class CurrencyLocked(Conflict):
    """The tenant already has offers priced in its currency."""

    code = "currency_locked"


class TimezoneLocked(Conflict):
    """A live tenant's billing periods are cut in its timezone."""

    code = "timezone_locked"
