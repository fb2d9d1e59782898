"""The HTTP shapes of offers, their versions, promotions and the public catalogue."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mvne.infra.fields import DateTime, DecimalString, Integer, LocalDate, Text

CODE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ID_PATTERN = r"^[a-z]{2,8}_[0-9A-Za-z]{1,34}$"
# Integers in allowances are bounded loosely here (so the service can say precisely what is wrong, with a
# stable code) but never beyond what a JSON number and a database bigint hold.
LOOSE = validate.Range(-(2**53), 2**53)


class AllowancesSchema(Schema):
    data_mb = Integer(load_default=0, validate=validate.Range(0, 10_000_000))
    voice_minutes = Integer(load_default=0, validate=validate.Range(0, 1_000_000))
    sms = Integer(load_default=0, validate=validate.Range(0, 1_000_000))
    mms = Integer(load_default=0, validate=validate.Range(0, 1_000_000), metadata={"description": "0: none."})


class HomeAllowancesViewSchema(Schema):
    data_mb = fields.Integer(allow_none=True, metadata={"description": "null: unlimited."})
    voice_minutes = fields.Integer(allow_none=True)
    sms = fields.Integer(allow_none=True)
    mms = fields.Integer(allow_none=True)


class OveragePricesSchema(Schema):
    data_per_mb = DecimalString(required=True)
    voice_per_minute = DecimalString(required=True)
    sms_per_message = DecimalString(required=True)
    mms_per_message = DecimalString(
        load_default=None,
        allow_none=True,
        metadata={"description": "Left out: MMS beyond the allowances is not priced, and rejected (no_rate)."},
    )


class ZoneAllowanceSchema(Schema):
    service = Text(required=True, max_length=10, metadata={"description": "data, voice, sms or mms."})
    zone = Text(load_default="home", max_length=10, metadata={"description": "home, eu or world."})
    amount = Integer(
        allow_none=True,
        load_default=None,
        validate=LOOSE,
        metadata={"description": "MB, minutes or messages; leave out when unlimited."},
    )
    unlimited = fields.Boolean(load_default=False)
    fair_use_amount = Integer(
        allow_none=True,
        load_default=None,
        validate=LOOSE,
        metadata={"description": "Unlimited only: throttled beyond."},
    )
    roam_like_at_home = fields.Boolean(
        load_default=False, metadata={"description": "A home allowance that also covers EU roaming."}
    )
    eu_fair_use_amount = Integer(allow_none=True, load_default=None, validate=LOOSE)
    rollover_cap = Integer(load_default=0, validate=LOOSE)
    priority = Integer(load_default=100, validate=LOOSE)


class ZoneAllowanceViewSchema(Schema):
    service = fields.String()
    zone = fields.String()
    amount = fields.Integer(allow_none=True)
    unlimited = fields.Boolean()
    fair_use_amount = fields.Integer(allow_none=True)
    roam_like_at_home = fields.Boolean()
    eu_fair_use_amount = fields.Integer(allow_none=True)
    rollover_cap = fields.Integer()
    priority = fields.Integer()


class ZonePricesSchema(Schema):
    data = DecimalString(required=True, metadata={"description": "Per MB."})
    voice = DecimalString(required=True, metadata={"description": "Per minute."})
    sms = DecimalString(required=True, metadata={"description": "Per message."})
    mms = DecimalString(metadata={"description": "Per message; left out: not priced in this zone."})


class UsagePricesSchema(Schema):
    home = fields.Nested(ZonePricesSchema)
    eu = fields.Nested(ZonePricesSchema)
    world = fields.Nested(ZonePricesSchema)


class ChargeSchema(Schema):
    code = Text(required=True, min_length=1, max_length=64, pattern=CODE_PATTERN)
    name = Text(required=True, min_length=1, max_length=200)
    amount = DecimalString(required=True, metadata={"description": "Tax excluded."})
    tax_category = Text(load_default="standard", max_length=20, metadata={"description": "standard, zero or exempt."})


_TERMS_DESCRIPTIONS = {
    "price": "Tax excluded: per monthly period (plan, bundle) or per purchase (addon, topup).",
    "tax_category": "standard (the tenant's VAT rate), zero or exempt.",
    "rate_card_id": "A retail rate card of the tenant that prices home usage beyond the allowances.",
    "validity_days": "Add-ons and top-ups: how long their allowances last.",
    "includes": "Bundles: the add-on offers sold together.",
}


def _terms_fields(*, required: bool) -> dict[str, fields.Field]:
    """The fields of a version's terms; all optional on a PATCH."""
    req: dict[str, Any] = {"required": True} if required else {}
    return {
        "price": DecimalString(metadata={"description": _TERMS_DESCRIPTIONS["price"]}, **req),
        "tax_category": Text(max_length=20, metadata={"description": _TERMS_DESCRIPTIONS["tax_category"]}),
        "charges": fields.List(fields.Nested(ChargeSchema), validate=validate.Length(max=10)),
        "allowances": fields.List(fields.Nested(ZoneAllowanceSchema), validate=validate.Length(max=30), **req),
        "usage_prices": fields.Nested(UsagePricesSchema, **req),
        "rate_card_id": Text(allow_none=True, max_length=40, pattern=ID_PATTERN),
        "validity_days": Integer(allow_none=True, validate=LOOSE),
        "includes": fields.List(Text(max_length=40, pattern=ID_PATTERN), validate=validate.Length(max=20)),
        "effective_from": LocalDate(allow_none=True, metadata={"description": "In force from this local date."}),
        "existing_subscribers": Text(
            max_length=20,
            metadata={"description": "keep, on_date (move at move_on) or at_renewal (at the next period's start)."},
        ),
        "move_on": LocalDate(
            allow_none=True, metadata={"description": "on_date: when lines move (default: effective_from)."}
        ),
    }


OfferVersionCreateSchema = Schema.from_dict(_terms_fields(required=True), name="OfferVersionCreate")
OfferVersionUpdateSchema = Schema.from_dict(_terms_fields(required=False), name="OfferVersionUpdate")


class OfferCreateSchema(Schema):
    code = Text(
        required=True,
        min_length=1,
        max_length=64,
        pattern=CODE_PATTERN,
        pattern_error="Letters, digits, _, . and - only.",
    )
    name = Text(required=True, min_length=1, max_length=200)
    description = Text(load_default="", max_length=2000)
    kind = Text(load_default="plan", max_length=20, metadata={"description": "plan, addon, topup or bundle."})
    public = fields.Boolean(
        load_default=False, metadata={"description": "Sold by white-label apps (public catalogue)."}
    )
    price = DecimalString(required=True, metadata={"description": _TERMS_DESCRIPTIONS["price"]})
    allowances = fields.Nested(AllowancesSchema, required=True, metadata={"description": "Home allowances."})
    overage = fields.Nested(OveragePricesSchema, required=True, metadata={"description": "Home prices beyond."})
    zone_allowances = fields.List(
        fields.Nested(ZoneAllowanceSchema),
        validate=validate.Length(max=30),
        metadata={"description": "Allowances per service and zone; a home one replaces the flat allowance."},
    )
    usage_prices = fields.Nested(UsagePricesSchema, metadata={"description": "EU and world prices beyond."})
    tax_category = Text(load_default="standard", max_length=20)
    charges = fields.List(fields.Nested(ChargeSchema), validate=validate.Length(max=10))
    rate_card_id = Text(allow_none=True, max_length=40, pattern=ID_PATTERN)
    validity_days = Integer(allow_none=True, validate=LOOSE)
    includes = fields.List(Text(max_length=40, pattern=ID_PATTERN), validate=validate.Length(max=20))


class OfferVersionSchema(Schema):
    id = fields.String()
    offer_id = fields.String()
    number = fields.Integer()
    status = fields.String()
    effective_from = LocalDate(allow_none=True)
    effective_from_at = fields.AwareDateTime(allow_none=True)
    effective_to_at = fields.AwareDateTime(allow_none=True)
    price = DecimalString()
    tax_category = fields.String()
    charges = fields.List(fields.Nested(ChargeSchema))
    allowances = fields.List(fields.Nested(ZoneAllowanceViewSchema))
    usage_prices = fields.Nested(UsagePricesSchema)
    rate_card_id = fields.String(allow_none=True)
    validity_days = fields.Integer(allow_none=True)
    includes = fields.List(fields.String())
    existing_subscribers = fields.String()
    move_on = LocalDate(allow_none=True)
    created_at = fields.AwareDateTime()
    published_at = fields.AwareDateTime(allow_none=True)


class OfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    kind = fields.String()
    status = fields.String()
    public = fields.Boolean()
    currency = fields.String()
    price = DecimalString(metadata={"description": "The current version's price."})
    allowances = fields.Nested(HomeAllowancesViewSchema, metadata={"description": "The current version's, at home."})
    overage = fields.Nested(OveragePricesSchema, metadata={"description": "The current version's home prices."})
    current_version = fields.Nested(OfferVersionSchema)
    created_at = fields.AwareDateTime()
    published_at = fields.AwareDateTime(allow_none=True)
    retired_at = fields.AwareDateTime(allow_none=True)


class PublicOfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    description = fields.String()
    kind = fields.String()
    currency = fields.String()
    version = fields.Integer()
    price_excluding_tax = DecimalString()
    tax_rate = DecimalString(metadata={"description": "A fraction: 0.20 is 20%."})
    price_including_tax = DecimalString()
    allowances = fields.List(fields.Nested(ZoneAllowanceViewSchema))
    usage_prices = fields.Nested(UsagePricesSchema)
    charges = fields.List(fields.Nested(ChargeSchema))
    validity_days = fields.Integer(allow_none=True)
    includes = fields.List(fields.String())


class PublicCatalogSchema(Schema):
    tenant = fields.String()
    name = fields.String()
    currency = fields.String()
    offers = fields.List(fields.Nested(PublicOfferSchema))


class PublicCatalogArgs(Schema):
    tenant = Text(max_length=40, metadata={"description": "The tenant's id (or give `app`)."})
    app = Text(max_length=100, metadata={"description": "The client id of one of the tenant's apps."})

    @validates_schema
    def _one_named(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("tenant") and not data.get("app"):
            raise ValidationError("Name the tenant or one of its apps.", field_name="tenant")


class PromotionCreateSchema(Schema):
    code = Text(required=True, min_length=1, max_length=64, pattern=CODE_PATTERN)
    name = Text(load_default="", max_length=200)
    kind = Text(required=True, max_length=10, metadata={"description": "percent or amount."})
    value = DecimalString(required=True, metadata={"description": "Percent (0 to 100) or an amount off per invoice."})
    cycles = Integer(allow_none=True, load_default=None, validate=LOOSE, metadata={"description": "null: forever."})
    max_redemptions = Integer(allow_none=True, load_default=None, validate=LOOSE)
    valid_from = DateTime(allow_none=True, load_default=None)
    valid_until = DateTime(allow_none=True, load_default=None)
    offer_ids = fields.List(
        Text(max_length=40, pattern=ID_PATTERN), load_default=list, validate=validate.Length(max=50)
    )


class PromotionSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    kind = fields.String()
    value = DecimalString()
    cycles = fields.Integer(allow_none=True)
    max_redemptions = fields.Integer(allow_none=True)
    redemptions = fields.Integer()
    valid_from = fields.AwareDateTime(allow_none=True)
    valid_until = fields.AwareDateTime(allow_none=True)
    offer_ids = fields.List(fields.String())
    status = fields.String()
    created_at = fields.AwareDateTime()
    disabled_at = fields.AwareDateTime(allow_none=True)
