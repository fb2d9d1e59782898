"""The HTTP shapes of tenants, API clients and customers."""

from __future__ import annotations

import functools
import zoneinfo
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_dump, validate, validates, validates_schema

from mvne.infra.fields import Country, DecimalString, Integer, Text
from mvne.tenants.credentials import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from mvne.tenants.roles import ROLE_NAMES
from mvne.tenants.signup import currencies_in_use
from mvne.tenants.staff import STATUSES as STAFF_STATUSES
from mvne.tenants.staff import invitation_view, staff_view

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
SUPPORTED_CURRENCIES = ("EUR", "GBP", "USD", "CHF", "SEK", "PLN", "DKK", "NOK")
TIMEZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class TenantCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200)
    slug = Text(
        required=True, min_length=1, max_length=63, pattern=SLUG, pattern_error="Lowercase letters, digits and -."
    )
    country = Country(required=True)
    currency = Text(required=True, max_length=3, validate=validate.OneOf(SUPPORTED_CURRENCIES))
    timezone = Text(
        required=True,
        min_length=1,
        max_length=64,
        pattern=TIMEZONE,
        pattern_error="Unknown IANA time zone.",
        metadata={"example": "Europe/Paris", "description": "An IANA time zone name."},
    )
    status = Text(
        load_default="active",
        max_length=20,
        validate=validate.OneOf(("active", "onboarding")),
        metadata={
            "description": "active (the default): live from the start; onboarding: a sandbox that the tenant "
            "takes live itself with POST /v1/tenant/launch once its onboarding checklist is complete."
        },
    )

    @validates("timezone")
    def _timezone(self, value: str, **kwargs: Any) -> None:
        check_timezone(value)


def check_timezone(value: str) -> None:
    """Refuse a name that is not a time zone of the IANA database this machine has."""
    if value not in _time_zones():
        raise ValidationError("Unknown IANA time zone.")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Unknown IANA time zone.") from None


class NumberRangeSchema(Schema):
    first = fields.String()
    last = fields.String()
    size = fields.Integer()


class TenantSchema(Schema):
    id = fields.String()
    name = fields.String()
    slug = fields.String()
    country = fields.String()
    currency = fields.String()
    timezone = fields.String()
    status = fields.String(
        metadata={
            "description": "onboarding (a sandbox, from self-service sign-up until its launch); active; suspended "
            "(its API answers 403 tenant_suspended, its subscribers keep service); offboarding (its data is being "
            "exported, then erased); offboarded (a tombstone).",
            "enum": ["onboarding", "active", "suspended", "offboarding", "offboarded"],
        }
    )
    created_at = fields.AwareDateTime()
    suspended_at = fields.AwareDateTime(allow_none=True)
    suspension_reason = fields.String(allow_none=True)
    offboarded_at = fields.AwareDateTime(allow_none=True)
    export_location = fields.String(
        allow_none=True,
        metadata={"description": "The storage key of the offboarding export's manifest, once the export is complete."},
    )
    launched_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "When the tenant launched (left its sandbox); null otherwise."}
    )
    number_range = fields.Nested(NumberRangeSchema, allow_none=True)
    esim_pool = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)


class TenantSuspendSchema(Schema):
    reason = Text(max_length=500, metadata={"description": "Why, for the record and the tenant's event log."})


class ApiClientCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200)
    scopes = fields.List(
        Text(min_length=1, max_length=64, pattern=r"^[a-z_]+:[a-z_]+$", pattern_error="Not a scope."),
        required=True,
        validate=validate.Length(1, 50),
    )


class CredentialsSchema(Schema):
    client_id = fields.String()
    client_secret = fields.String()
    scopes = fields.List(fields.String())
    tenant_id = fields.String(allow_none=True)


class ApiClientSchema(Schema):
    """An API client as its owner sees it; never its secret."""

    id = fields.String()
    tenant_id = fields.String(allow_none=True, metadata={"description": "None for a platform operator's client."})
    name = fields.String()
    kind = fields.String(
        metadata={
            "enum": ["confidential", "public"],
            "description": "confidential: a back end with a secret (client credentials); public: an app of the "
            "tenant's subscribers, with no secret (authorization code with PKCE, see /v1/apps).",
        }
    )
    scopes = fields.List(fields.String())
    status = fields.String(metadata={"enum": ["active", "revoked"]})
    created_at = fields.AwareDateTime()
    last_used_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "When the client last obtained an access token."}
    )
    revoked_at = fields.AwareDateTime(allow_none=True)
    previous_secret_expires_at = fields.AwareDateTime(
        allow_none=True,
        metadata={
            "description": "After a rotation, when the secret before it stops working; null when only the "
            "current secret works."
        },
    )

    @pre_dump
    def _view(self, client: Any, **kwargs: Any) -> dict[str, Any]:
        return client if isinstance(client, dict) else api_client_view(client)


def api_client_view(client: Any) -> dict[str, Any]:
    """What `ApiClientSchema` shows of an `ApiClient` row."""
    return {
        "id": client.id,
        "tenant_id": client.tenant_id,
        "name": client.name,
        "kind": client.kind,
        "scopes": client.scopes.split(),
        "status": client.status,
        "created_at": client.created_at,
        "last_used_at": client.last_used_at,
        "revoked_at": client.revoked_at,
        "previous_secret_expires_at": client.previous_secret_valid_until(),
    }


class ApiClientSecretSchema(ApiClientSchema):
    client_secret = fields.String(metadata={"description": "The client's secret; shown in this response only."})


API_CLIENT_MAX_OVERLAP_SECONDS = 7 * 24 * 3600


class SecretRotationSchema(Schema):
    overlap_seconds = Integer(
        load_default=24 * 3600,
        validate=validate.Range(0, API_CLIENT_MAX_OVERLAP_SECONDS),
        metadata={
            "description": "How long the current secret keeps working beside the new one: 0 (it stops at once) "
            "to 604800 (7 days); 86400 (24 hours) when absent."
        },
    )


REDIRECT_URIS_DESCRIPTION = (
    "Where subscribers are sent back with an authorization code, compared exactly: https URIs, loopback http "
    "(http://127.0.0.1:<port>/..., http://[::1]..., http://localhost...) for native apps, or a private-use scheme "
    "named after a domain you own (com.example.app:/callback). No fragments; 1 to 10 URIs."
)


def _redirect_uris(required: bool) -> fields.List:
    return fields.List(
        Text(min_length=1, max_length=2000),
        required=required,
        validate=validate.Length(1, 10),
        metadata={"description": REDIRECT_URIS_DESCRIPTION},
    )


class AppCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200, metadata={"description": "Shown on the consent page."})
    redirect_uris = _redirect_uris(required=True)


class AppUpdateSchema(Schema):
    name = Text(min_length=1, max_length=200)
    redirect_uris = _redirect_uris(required=False)

    @validates_schema
    def _something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give name or redirect_uris.", "_schema")


class AppSchema(Schema):
    """An app (a public OAuth client) as its tenant sees it, with what an OAuth library needs to use it."""

    id = fields.String()
    client_id = fields.String(metadata={"description": "The OAuth client_id (the app's id)."})
    tenant_id = fields.String()
    name = fields.String()
    redirect_uris = fields.List(fields.String())
    scopes = fields.List(fields.String(), metadata={"description": "What the app may ask its subscribers for."})
    grant_types = fields.List(fields.String())
    response_types = fields.List(fields.String())
    token_endpoint_auth_method = fields.String(metadata={"enum": ["none"]})
    status = fields.String(
        metadata={
            "enum": ["active", "revoked"],
            "description": "Revoke with POST /v1/api-clients/{id}/revoke: no sign-in and no refresh from then on.",
        }
    )
    created_at = fields.AwareDateTime()
    last_used_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "When a subscriber last got an access token through the app."}
    )
    revoked_at = fields.AwareDateTime(allow_none=True)

    @pre_dump
    def _view(self, app: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "id": app.id,
            "client_id": app.id,
            "tenant_id": app.tenant_id,
            "name": app.name,
            "redirect_uris": list(app.redirect_uris or []),
            "scopes": app.scopes.split(),
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "status": app.status,
            "created_at": app.created_at,
            "last_used_at": app.last_used_at,
            "revoked_at": app.revoked_at,
        }


class AddressSchema(Schema):
    line1 = Text(required=True, min_length=1, max_length=200)
    line2 = Text(max_length=200)
    postal_code = Text(required=True, min_length=1, max_length=20)
    city = Text(required=True, min_length=1, max_length=100)
    country = Country(required=True)


VAT_ID = r"^[A-Za-z0-9 .-]{2,30}$"


class CustomerCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    address = fields.Nested(AddressSchema, required=True)
    vat_id = Text(
        max_length=30,
        pattern=VAT_ID,
        pattern_error="Letters and digits of a VAT id, such as FR40303265045.",
        metadata={"description": "A business customer's VAT id; EU ids are checked against the address's country."},
    )


class CustomerSchema(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    address = fields.Nested(AddressSchema)
    vat_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class LegalProfileInputSchema(Schema):
    legal_name = Text(required=True, min_length=1, max_length=200, metadata={"example": "Nova Mobile"})
    legal_form = Text(max_length=50, metadata={"example": "SAS"})
    address = fields.Nested(AddressSchema, required=True, metadata={"description": "The registered office."})
    registration_number = Text(
        max_length=50,
        metadata={"description": "In France the SIREN (9 digits) or SIRET (14 digits), required; elsewhere as issued."},
    )
    rcs_city = Text(max_length=100, metadata={"description": "France: the city of the RCS registry."})
    share_capital = DecimalString(metadata={"description": "Share capital, in the tenant's currency."})
    vat_id = Text(
        max_length=30,
        pattern=VAT_ID,
        pattern_error="Letters and digits of a VAT id, such as FR40303265045.",
        metadata={"description": "EU VAT ids are checked; the prefix must be the address's country (EL for GR)."},
    )
    iban = Text(max_length=50, metadata={"description": "The account customers pay transfers to."})
    bic = Text(max_length=15)
    payment_terms_days = Integer(
        validate=validate.Range(0, 120),
        metadata={
            "description": "Days between an invoice and its due date (0 to 120), the same value as the billing "
            "settings' (PUT /v1/tenant/billing-settings); left out, the current terms stay (14 days by default)."
        },
    )
    invoice_locale = Text(
        max_length=20,
        metadata={"description": "Language of the invoices, e.g. fr_FR; by default fr_FR in France, en_GB elsewhere."},
    )
    support_email = fields.Email(validate=validate.Length(max=254))
    support_phone = Text(max_length=30)


class LegalProfileSchema(Schema):
    legal_name = fields.String()
    legal_form = fields.String(allow_none=True)
    address = fields.Nested(AddressSchema)
    registration_number = fields.String(allow_none=True)
    rcs_city = fields.String(allow_none=True)
    share_capital = DecimalString(allow_none=True)
    vat_id = fields.String(allow_none=True)
    iban = fields.String(allow_none=True)
    bic = fields.String(allow_none=True)
    payment_terms_days = fields.Integer(metadata={"description": "From the billing settings."})
    invoice_locale = fields.String()
    support_email = fields.String(allow_none=True)
    support_phone = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class EventSchema(Schema):
    id = fields.String()
    type = fields.String()
    object_id = fields.String()
    data = fields.Dict()
    created_at = fields.AwareDateTime()


class WebhookEndpointCreateSchema(Schema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False, validate=validate.Length(max=2000))
    event_types = fields.List(
        Text(min_length=1, max_length=100, pattern=r"^(\*|[a-z_]+\.[a-z_]+)$", pattern_error="Not an event type."),
        load_default=["*"],
        validate=validate.Length(1, 100),
        metadata={"description": 'Event types to receive, e.g. ["invoice.issued"]; "*" for all.'},
    )


class WebhookEndpointSchema(Schema):
    id = fields.String()
    url = fields.String()
    event_types = fields.List(fields.String())
    status = fields.String()
    created_at = fields.AwareDateTime()


class WebhookEndpointCreatedSchema(WebhookEndpointSchema):
    secret = fields.String(metadata={"description": "Signing secret; shown only once."})


class WebhookDeliverySchema(Schema):
    id = fields.String()
    endpoint = fields.String(attribute="endpoint_id")
    event = fields.String(attribute="event_id")
    event_type = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    last_attempt_at = fields.AwareDateTime(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)


# Staff users, console sessions and sign-up --------------------------------------------------------------

EMAIL_MAX = 254
TOKEN_MAX = 100  # the links' tokens are 43 characters; room for what a later version issues
ROLE_FIELD_DOC = {
    "enum": list(ROLE_NAMES),
    "description": "owner, admin, catalog_manager, support, finance or read_only (see the permission matrix).",
}


def _email(**kwargs: Any) -> fields.Email:
    return fields.Email(validate=validate.Length(max=EMAIL_MAX), metadata={"example": "ada@nimbus.example"}, **kwargs)


def _password(**kwargs: Any) -> Text:
    return Text(
        min_length=1,
        max_length=PASSWORD_MAX_LENGTH,
        metadata={"description": f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, hard to guess."},
        **kwargs,
    )


def _token(**kwargs: Any) -> Text:
    return Text(
        min_length=1,
        max_length=TOKEN_MAX,
        metadata={"description": "The code of the link we e-mailed (its `token` parameter)."},
        **kwargs,
    )


class StaffUserSchema(Schema):
    """A staff user; never its password, its second factor's secret or a token."""

    id = fields.String()
    email = fields.String()
    name = fields.String()
    role = fields.String(metadata=ROLE_FIELD_DOC)
    status = fields.String(metadata={"enum": list(STAFF_STATUSES)})
    email_verified = fields.Boolean()
    totp_enabled = fields.Boolean(metadata={"description": "Whether login asks for a one-time code (TOTP)."})
    locked_until = fields.AwareDateTime(
        allow_none=True, metadata={"description": "Until when logins are refused after too many failures."}
    )
    last_login_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()

    @pre_dump
    def _view(self, user: Any, **kwargs: Any) -> dict[str, Any]:
        return user if isinstance(user, dict) else staff_view(user)


class StaffUpdateSchema(Schema):
    role = Text(max_length=20, validate=validate.OneOf(ROLE_NAMES), metadata=ROLE_FIELD_DOC)
    status = Text(
        max_length=20,
        validate=validate.OneOf(STAFF_STATUSES),
        metadata={"enum": list(STAFF_STATUSES), "description": "disabled: the user's sessions end and logins fail."},
    )
    openapi_extra = {"minProperties": 1}

    @validates_schema
    def _something(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give role, status or both.", field_name="_schema")


class StaffInvitationCreateSchema(Schema):
    email = _email(required=True)
    role = Text(required=True, max_length=20, validate=validate.OneOf(ROLE_NAMES), metadata=ROLE_FIELD_DOC)


class StaffInvitationSchema(Schema):
    id = fields.String()
    email = fields.String()
    role = fields.String(metadata=ROLE_FIELD_DOC)
    status = fields.String(metadata={"enum": ["pending", "accepted", "revoked", "expired"]})
    invited_by = fields.String(metadata={"description": "The staff user (or the API client) who invited."})
    expires_at = fields.AwareDateTime()
    accepted_at = fields.AwareDateTime(allow_none=True)
    staff_user_id = fields.String(allow_none=True, metadata={"description": "Who joined with it, once accepted."})
    revoked_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()

    @pre_dump
    def _view(self, invitation: Any, **kwargs: Any) -> dict[str, Any]:
        return invitation if isinstance(invitation, dict) else invitation_view(invitation)


class InvitationAcceptSchema(Schema):
    token = _token(required=True)
    name = Text(required=True, min_length=1, max_length=200)
    password = _password(required=True)


class LoginSchema(Schema):
    tenant = Text(
        required=True,
        min_length=1,
        max_length=63,
        metadata={"description": "The tenant's slug, as given at sign-up.", "example": "nimbus"},
    )
    email = Text(required=True, min_length=1, max_length=EMAIL_MAX, metadata={"example": "ada@nimbus.example"})
    password = Text(required=True, min_length=1, max_length=PASSWORD_MAX_LENGTH)
    totp_code = Text(
        min_length=1,
        max_length=16,
        metadata={
            "description": "The code of the authenticator app, when two-factor login is on.",
            "example": "123456",
        },
    )


class SessionCreatedSchema(Schema):
    csrf_token = fields.String(
        metadata={
            "description": "Send it back as the `X-CSRF-Token` header with every POST, PUT, PATCH and DELETE of "
            "this session; shown in this response only."
        }
    )
    expires_at = fields.AwareDateTime()
    staff_user = fields.Nested(StaffUserSchema)


class TenantSummarySchema(Schema):
    id = fields.String()
    slug = fields.String()
    name = fields.String()
    status = fields.String(metadata={"enum": ["onboarding", "active", "suspended", "offboarding", "offboarded"]})


class ConsoleMeSchema(Schema):
    staff_user = fields.Nested(StaffUserSchema)
    role = fields.String(metadata=ROLE_FIELD_DOC)
    scopes = fields.List(fields.String(), metadata={"description": "What the role allows, as API scopes."})
    totp_enabled = fields.Boolean()
    tenant = fields.Nested(TenantSummarySchema)
    session_expires_at = fields.AwareDateTime()


class TotpSetupSchema(Schema):
    secret = fields.String(metadata={"description": "The shared secret (base32), for typing in by hand."})
    otpauth_uri = fields.String(metadata={"description": "The otpauth:// URI authenticator apps read."})
    qr_svg = fields.String(metadata={"description": "The URI as a QR code: an SVG image as a data: URI."})


class TotpCodeSchema(Schema):
    code = Text(
        required=True,
        min_length=6,
        max_length=6,
        pattern=r"^[0-9]{6}$",
        pattern_error="Six digits, as the authenticator app shows them.",
        metadata={"example": "123456"},
    )


class SignupSchema(Schema):
    email = _email(required=True)
    password = _password(required=True)
    name = Text(min_length=1, max_length=200, metadata={"description": "The founder's name; the e-mail's by default."})
    company = Text(required=True, min_length=1, max_length=200, metadata={"example": "Nimbus Telecom SAS"})
    brand_name = Text(
        required=True,
        min_length=1,
        max_length=100,
        metadata={"description": "How the brand shows itself; its slug is made from it.", "example": "Nimbus Mobile"},
    )
    country = Country(required=True)
    currency = Text(
        required=True,
        min_length=3,
        max_length=3,
        validate=validate.OneOf(sorted(currencies_in_use()), error="Must be an ISO 4217 currency in use, such as EUR."),
        metadata={"example": "EUR"},
    )
    timezone = Text(
        min_length=1,
        max_length=64,
        pattern=TIMEZONE,
        pattern_error="Unknown IANA time zone.",
        metadata={
            "example": "Europe/Paris",
            "description": "An IANA time zone; by default the country's most populous.",
        },
    )

    @validates("timezone")
    def _timezone(self, value: str, **kwargs: Any) -> None:
        check_timezone(value)


class SignupTenantSchema(Schema):
    id = fields.String()
    slug = fields.String(metadata={"description": "Made from the brand's name; staff give it to log in."})
    status = fields.String(metadata={"enum": ["onboarding"]})


class SignupStaffUserSchema(Schema):
    id = fields.String()
    email = fields.String()
    role = fields.String(metadata={"enum": ["owner"]})
    email_verified = fields.Boolean()


class SignupResultSchema(Schema):
    tenant = fields.Nested(SignupTenantSchema)
    staff_user = fields.Nested(SignupStaffUserSchema)


class VerificationSchema(Schema):
    token = _token(required=True)


class VerifiedSchema(Schema):
    tenant = fields.Nested(TenantSummarySchema)
    staff_user = fields.Nested(StaffUserSchema)


class ResendVerificationSchema(Schema):
    email = _email(required=True)
    tenant = Text(
        required=True, min_length=1, max_length=63, metadata={"description": "The tenant's slug.", "example": "nimbus"}
    )


class AcceptedSchema(Schema):
    detail = fields.String()


COLOR = r"^#[0-9A-Fa-f]{6}$"
COLOR_ERROR = "A colour as #rrggbb, such as #1f4fd1."


class BrandInputSchema(Schema):
    display_name = Text(required=True, min_length=1, max_length=100, metadata={"example": "Nimbus Mobile"})
    primary_color = Text(
        required=True,
        min_length=7,
        max_length=7,
        pattern=COLOR,
        pattern_error=COLOR_ERROR,
        metadata={"example": "#1f4fd1"},
    )
    accent_color = Text(
        required=True,
        min_length=7,
        max_length=7,
        pattern=COLOR,
        pattern_error=COLOR_ERROR,
        metadata={"example": "#f5a623"},
    )
    support_email = fields.Email(validate=validate.Length(max=254), metadata={"example": "help@nimbus.example"})
    support_phone = Text(
        max_length=30,
        metadata={
            "description": "Checked and stored in E.164 form; a national number is read as one of the "
            "tenant's country.",
            "example": "+33 1 23 45 67 89",
        },
    )
    support_url = fields.Url(
        schemes={"https"},
        validate=validate.Length(max=500),
        metadata={"description": "An https:// page where subscribers find help."},
    )


class BrandSchema(Schema):
    display_name = fields.String()
    primary_color = fields.String()
    accent_color = fields.String()
    support_email = fields.String(allow_none=True)
    support_phone = fields.String(allow_none=True)
    support_url = fields.String(allow_none=True)
    logo_content_type = fields.String(
        allow_none=True, metadata={"description": "image/png, image/jpeg or image/webp; null until a logo is uploaded."}
    )
    logo_url = fields.String(
        allow_none=True, metadata={"description": "Where the API serves the logo (GET, scope tenant:read)."}
    )
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class BillingSettingsInputSchema(Schema):
    payment_terms_days = Integer(
        required=True,
        validate=validate.Range(0, 120),
        metadata={"description": "Days between an invoice and its due date, 0 to 120.", "example": 30},
    )
    invoice_series = Text(
        required=True,
        min_length=1,
        max_length=10,
        pattern=r"^[A-Z0-9-]{1,10}$",
        pattern_error="1 to 10 capital letters, digits and dashes, such as NIM-.",
        metadata={
            "description": "What invoice numbers start with: NIM- gives NIM-2026-000001. Invoices already issued "
            "keep their numbers.",
            "example": "NIM-",
        },
    )


class BillingSettingsSchema(Schema):
    payment_terms_days = fields.Integer()
    invoice_series = fields.String(
        allow_none=True, metadata={"description": "null until set: invoice numbers start with INV-."}
    )
    next_invoice_number_example = fields.String(
        metadata={"description": "How this year's first invoice number of the series reads."}
    )


class MarketInputSchema(Schema):
    country = Country(
        metadata={"description": "Fixed at sign-up: give the tenant's own country or leave it out (409 otherwise)."}
    )
    currency = Text(
        required=True,
        max_length=3,
        validate=validate.OneOf(SUPPORTED_CURRENCIES),
        metadata={"description": "ISO 4217; fixed once the tenant has offers (priced in it).", "example": "EUR"},
    )
    timezone = Text(
        required=True,
        min_length=1,
        max_length=64,
        pattern=TIMEZONE,
        pattern_error="Unknown IANA time zone.",
        metadata={
            "example": "Europe/Paris",
            "description": "An IANA time zone name: billing periods are cut in it; fixed once the tenant is live.",
        },
    )
    languages = fields.List(
        Text(min_length=2, max_length=35, metadata={"example": "fr-FR"}),
        required=True,
        validate=validate.Length(1, 20),
        metadata={"description": "BCP 47 language tags (fr, fr-FR, en-GB); the first is the default."},
    )
    tax_rate = DecimalString(
        required=True,
        validate=validate.Range(Decimal(0), Decimal(100), max_inclusive=False, error="From 0 to less than 100."),
        metadata={
            "description": "The VAT rate invoices apply, in percent (20 for 20%), at most 4 decimals, 0 to less "
            "than 100; kept exactly.",
            "example": "20",
        },
    )

    @validates("timezone")
    def _timezone(self, value: str, **kwargs: Any) -> None:
        if value not in _time_zones():
            raise ValidationError("Unknown IANA time zone.")


class MarketSchema(Schema):
    country = fields.String()
    currency = fields.String()
    timezone = fields.String()
    languages = fields.List(fields.String(), metadata={"description": "BCP 47 tags; empty until set."})
    default_language = fields.String(allow_none=True)
    tax_rate = DecimalString(
        allow_none=True, metadata={"description": "The tenant's VAT rate in percent; null until set."}
    )
    standard_tax_rate = DecimalString(
        allow_none=True,
        metadata={"description": "The country's standard VAT rate today, in percent, when the platform knows it."},
    )


class SubscriberAccountSchema(Schema):
    """How a customer signs in to the tenant's apps; never a password or a code."""

    id = fields.String()
    customer_id = fields.String()
    email = fields.String()
    status = fields.String(
        metadata={"enum": ["active", "disabled"], "description": "disabled: sign-ins are refused, tokens too."}
    )
    has_password = fields.Function(
        lambda account: account.password_hash is not None,
        metadata={"description": "Whether the subscriber set a password (a code by e-mail always works)."},
    )
    locked_until = fields.AwareDateTime(
        allow_none=True, metadata={"description": "Until when sign-ins are refused after too many wrong attempts."}
    )
    last_login_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
