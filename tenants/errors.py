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


class StaffUserNotFound(NotFound):
    code = "staff_user_not_found"


class StaffInvitationNotFound(NotFound):
    code = "staff_invitation_not_found"


class StaffEmailTaken(Conflict):
    """The tenant already has a staff user with this e-mail address."""

    code = "staff_email_taken"


class StaffInvitationAccepted(Conflict):
    """An accepted invitation cannot be revoked: change the staff user's status instead."""

    code = "staff_invitation_accepted"


class LastOwner(Conflict):
    """The change would leave the tenant without an active owner."""

    code = "last_owner"


class OwnerRoleRequired(DomainError):
    """Only an owner grants, takes away or invites to the owner role."""

    code = "owner_role_required"
    status = 403
    title = "Forbidden"


class VerificationTokenInvalid(InvalidInput):
    """An e-mail verification link that is unknown or already used."""

    code = "verification_token_invalid"


class VerificationTokenExpired(InvalidInput):
    code = "verification_token_expired"


class InvitationTokenInvalid(InvalidInput):
    """An invitation link that is unknown, already used, or of a tenant that is gone."""

    code = "invitation_token_invalid"


class InvitationTokenExpired(InvalidInput):
    code = "invitation_token_expired"


class InvitationRevoked(InvalidInput):
    code = "invitation_revoked"


class LoginRefused(DomainError):
    """A console login that did not open a session; its failure count is kept whatever the answer."""

    status = 401
    title = "Unauthorized"


class InvalidCredentials(LoginRefused):
    """Wrong tenant, e-mail or password (the answer does not say which), or a disabled account."""

    code = "invalid_credentials"


class TotpRequired(LoginRefused):
    code = "totp_required"


class InvalidTotp(LoginRefused):
    code = "invalid_totp"


class EmailNotVerified(LoginRefused):
    code = "email_not_verified"
    status = 403
    title = "Forbidden"


class LoginLocked(LoginRefused):
    """Too many failed logins in a row: the account refuses logins for a while (`Retry-After`)."""

    code = "login_locked"
    status = 423
    title = "Locked"


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"


class TotpNotStarted(Conflict):
    """Confirming two-factor login before starting its setup (POST /v1/console/me/totp)."""

    code = "totp_not_started"


class TotpNotEnabled(Conflict):
    code = "totp_not_enabled"


class TotpCodeIncorrect(InvalidInput):
    """A one-time code that does not match the authenticator's secret now."""

    code = "totp_code_incorrect"


class TimezoneRequired(InvalidInput):
    code = "timezone_required"


class TenantSuspended(LoginRefused):
    """The tenant's access is suspended: its staff cannot log in until it is resumed."""

    code = "tenant_suspended"
    status = 403
    title = "Forbidden"


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


class SubscriberAccountNotFound(NotFound):
    """The customer has never signed in to one of the tenant's apps: no account was opened yet."""

    code = "subscriber_account_not_found"
