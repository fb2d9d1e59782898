"""The HTTP shapes of tenants, API clients and customers."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_dump, validate, validates, validates_schema

from mvne.infra.fields import Country, DecimalString, Integer, Text

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

    @validates("timezone")
    def _timezone(self, value: str, **kwargs: Any) -> None:
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
            "description": "active; suspended (its API answers 403 tenant_suspended, its subscribers keep "
            "service); offboarding (its data is being exported, then erased); offboarded (a tombstone).",
            "enum": ["active", "suspended", "offboarding", "offboarded"],
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
        load_default=14,
        validate=validate.Range(0, 120),
        metadata={"description": "Days between an invoice and its due date."},
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
    payment_terms_days = fields.Integer()
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
