"""The HTTP shapes of tenants, API clients and customers."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from mvne.infra.fields import Country, Text

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
    status = fields.String()
    created_at = fields.AwareDateTime()
    number_range = fields.Nested(NumberRangeSchema, allow_none=True)
    esim_pool = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)


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


class AddressSchema(Schema):
    line1 = Text(required=True, min_length=1, max_length=200)
    line2 = Text(max_length=200)
    postal_code = Text(required=True, min_length=1, max_length=20)
    city = Text(required=True, min_length=1, max_length=100)
    country = Country(required=True)


class CustomerCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    address = fields.Nested(AddressSchema, required=True)


class CustomerSchema(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    address = fields.Nested(AddressSchema)
    created_at = fields.AwareDateTime()


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
