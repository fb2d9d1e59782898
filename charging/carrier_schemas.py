"""The HTTP shapes of carrier billing: the tenant's policy, lines barred, merchants, charges and refunds."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mvne.charging.carrier_billing import MODES
from mvne.charging.schemas import MSISDN_PATTERN
from mvne.infra.fields import DecimalString, Text
from mvne.infra.web.pagination import PageArgs

REFUSAL_CODES = (
    "carrier_billing_barred, line_barred, monthly_cap_exceeded, insufficient_balance, line_not_active, "
    "subscription_not_found, merchant_suspended or invalid_amount."
)


class CarrierBillingPolicyInputSchema(Schema):
    mode = Text(
        required=True,
        max_length=10,
        validate=validate.OneOf(MODES),
        metadata={"enum": list(MODES), "example": "capped"},
    )
    monthly_cap = DecimalString(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "The most merchants may charge each line in a billing period; required when capped.",
            "example": "20.00",
        },
    )


class CarrierBillingPolicySchema(Schema):
    mode = fields.String(
        metadata={
            "enum": list(MODES),
            "description": "allowed: merchants may charge; capped: up to monthly_cap per line and period; "
            "barred (until the tenant chooses): no merchant may charge.",
        }
    )
    monthly_cap = DecimalString(allow_none=True)


class JsonBoolean(fields.Boolean):
    """true or false, as JSON has them: "yes", 1 and "true" are refused rather than read as true."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


class LineCarrierBillingInputSchema(Schema):
    barred = JsonBoolean(required=True, metadata={"example": True})


class LineCarrierBillingSchema(Schema):
    subscription = fields.String()
    barred = fields.Boolean(metadata={"description": "Barred: every merchant's charge is refused (line_barred)."})


class MerchantCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200, metadata={"example": "Arcade Games"})


class MerchantSchema(Schema):
    id = fields.String()
    name = fields.String()
    status = fields.String(metadata={"enum": ["active", "suspended"]})
    api_client = fields.String(
        attribute="api_client_id", metadata={"description": "The API client whose tokens charge as this merchant."}
    )
    created_at = fields.AwareDateTime()
    suspended_at = fields.AwareDateTime(allow_none=True)


class MerchantCreatedSchema(MerchantSchema):
    client_id = fields.String(metadata={"description": "The merchant's API client id (OAuth2 client credentials)."})
    client_secret = fields.String(metadata={"description": "The client's secret; shown in this response only."})
    scopes = fields.List(fields.String())


class CarrierChargeCreateSchema(Schema):
    # The document says what `_one_line` checks: a charge names its line by subscription or msisdn.
    openapi_extra: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["subscription"], "properties": {"subscription": {"type": "string"}}},
            {"required": ["msisdn"], "properties": {"msisdn": {"type": "string"}}},
        ]
    }

    subscription = Text(load_default=None, min_length=1, max_length=64, metadata={"example": "sub_01J..."})
    msisdn = Text(
        load_default=None,
        max_length=16,
        pattern=MSISDN_PATTERN,
        pattern_error="Must be an E.164 number such as +33612345678.",
    )
    amount = DecimalString(
        required=True,
        minimum=None,
        metadata={
            "description": "In the tenant's currency: more than 0, at most 1000, in its minor unit (invalid_amount).",
            "example": "4.99",
        },
    )
    description = Text(
        required=True, min_length=1, max_length=200, metadata={"description": "Shown to the subscriber."}
    )
    merchant_reference = Text(
        load_default=None,
        min_length=1,
        max_length=100,
        metadata={"description": "The merchant's own id of the purchase, unique among its charges that went through."},
    )

    @validates_schema
    def _one_line(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("subscription") and not data.get("msisdn"):
            raise ValidationError("Give subscription or msisdn.", "subscription")
        if data.get("subscription") and data.get("msisdn"):
            raise ValidationError("Give subscription or msisdn, not both.", "msisdn")


class CarrierRefundCreateSchema(Schema):
    amount = DecimalString(
        required=True,
        minimum=None,
        metadata={"description": "At most what is left of the charge (refund_exceeds_charge).", "example": "1.00"},
    )


class CarrierRefundSchema(Schema):
    id = fields.String()
    charge = fields.String(attribute="charge_id")
    amount = DecimalString()
    settlement = fields.String(
        metadata={
            "enum": ["balance", "reduced", "credit"],
            "description": "balance: back to the prepaid balance; reduced: the charge, not invoiced yet, bills "
            "less; credit: the charge was invoiced, the next invoice credits the refund.",
        }
    )
    requested_by = fields.String(metadata={"enum": ["merchant", "tenant"]})
    invoice = fields.String(
        attribute="invoice_id", allow_none=True, metadata={"description": "The invoice that credited it."}
    )
    created_at = fields.AwareDateTime()


class CarrierChargeSchema(Schema):
    id = fields.String()
    merchant = fields.String(attribute="merchant_id")
    subscription = fields.String(
        attribute="subscription_id", allow_none=True, metadata={"description": "Null when no line was found."}
    )
    line_reference = fields.String(metadata={"description": "The line as the merchant named it."})
    msisdn = fields.String(allow_none=True)
    amount = DecimalString(minimum=None)
    currency = fields.String()
    refunded_amount = DecimalString()
    description = fields.String()
    merchant_reference = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["accepted", "refunded", "refused"]})
    refusal_code = fields.String(allow_none=True, metadata={"description": REFUSAL_CODES})
    refusal_detail = fields.String(allow_none=True)
    payment = fields.String(
        allow_none=True,
        metadata={
            "enum": ["balance", "invoice", None],
            "description": "balance: taken from the prepaid balance at once; invoice: billed on the next invoice.",
        },
    )
    period = fields.String(metadata={"description": "The billing period whose cap it counts against."})
    invoice = fields.String(
        attribute="invoice_id", allow_none=True, metadata={"description": "The invoice that billed it."}
    )
    refunds = fields.List(fields.Nested(CarrierRefundSchema))
    created_at = fields.AwareDateTime()


class CarrierChargeListArgs(PageArgs):
    status = Text(
        load_default=None,
        allow_none=False,
        validate=validate.OneOf(["accepted", "refunded", "refused"]),
        metadata={"description": "accepted, refunded or refused; every charge when absent."},
    )
    subscription = Text(load_default=None, allow_none=False, min_length=1, max_length=64)
