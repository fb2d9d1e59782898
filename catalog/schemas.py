"""The HTTP shapes of offers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mvne.infra.fields import DecimalString


class AllowancesSchema(Schema):
    data_mb = fields.Integer(load_default=0, validate=validate.Range(0, 10_000_000))
    voice_minutes = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000))
    sms = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000))


class OveragePricesSchema(Schema):
    data_per_mb = DecimalString(required=True)
    voice_per_minute = DecimalString(required=True)
    sms_per_message = DecimalString(required=True)


class OfferCreateSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    name = fields.String(required=True, validate=validate.Length(1, 200))
    price = DecimalString(required=True, metadata={"description": "Monthly price, tax excluded."})
    allowances = fields.Nested(AllowancesSchema, required=True)
    overage = fields.Nested(OveragePricesSchema, required=True)


class OfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    status = fields.String()
    currency = fields.String()
    price = DecimalString()
    allowances = fields.Method("_allowances")
    overage = fields.Method("_overage")
    created_at = fields.AwareDateTime()
    published_at = fields.AwareDateTime(allow_none=True)

    def _allowances(self, offer: object) -> dict[str, int]:
        return {k: getattr(offer, k) for k in ("data_mb", "voice_minutes", "sms")}

    def _overage(self, offer: object) -> dict[str, str]:
        field = DecimalString()
        return {
            "data_per_mb": field._serialize(offer.overage_data_per_mb, None, offer),  # type: ignore[attr-defined,dict-item]
            "voice_per_minute": field._serialize(offer.overage_voice_per_minute, None, offer),  # type: ignore[attr-defined,dict-item]
            "sms_per_message": field._serialize(offer.overage_sms_per_message, None, offer),  # type: ignore[attr-defined,dict-item]
        }
