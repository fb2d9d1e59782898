"""The HTTP shapes of offers."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, pre_dump, validate

from mvne.infra.fields import DecimalString, Integer, Text


class AllowancesSchema(Schema):
    data_mb = Integer(load_default=0, validate=validate.Range(0, 10_000_000))
    voice_minutes = Integer(load_default=0, validate=validate.Range(0, 1_000_000))
    sms = Integer(load_default=0, validate=validate.Range(0, 1_000_000))


class OveragePricesSchema(Schema):
    data_per_mb = DecimalString(required=True)
    voice_per_minute = DecimalString(required=True)
    sms_per_message = DecimalString(required=True)


class OfferCreateSchema(Schema):
    code = Text(
        required=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        pattern_error="Letters, digits, _, . and - only.",
    )
    name = Text(required=True, min_length=1, max_length=200)
    price = DecimalString(required=True, metadata={"description": "Monthly price, tax excluded; never negative."})
    allowances = fields.Nested(AllowancesSchema, required=True)
    overage = fields.Nested(OveragePricesSchema, required=True)


class OfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    status = fields.String()
    currency = fields.String()
    price = DecimalString()
    allowances = fields.Nested(AllowancesSchema)
    overage = fields.Nested(OveragePricesSchema)
    created_at = fields.AwareDateTime()
    published_at = fields.AwareDateTime(allow_none=True)

    @pre_dump
    def _group(self, offer: Any, **kwargs: Any) -> dict[str, Any]:
        # The model keeps flat columns; the API groups allowances and overage prices.
        view = {
            k: getattr(offer, k)
            for k in ("id", "code", "name", "status", "currency", "price", "created_at", "published_at")
        }
        view["allowances"] = {k: getattr(offer, k) for k in ("data_mb", "voice_minutes", "sms")}
        view["overage"] = {
            "data_per_mb": offer.overage_data_per_mb,
            "voice_per_minute": offer.overage_voice_per_minute,
            "sms_per_message": offer.overage_sms_per_message,
        }
        return view
