"""The HTTP shapes of subscriptions."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mvne.infra.fields import Text
from mvne.infra.web.pagination import PageArgs


class SubscriptionCreateSchema(Schema):
    customer = Text(required=True, min_length=1, max_length=64, metadata={"example": "cus_01J..."})
    offer = Text(required=True, min_length=1, max_length=64, metadata={"example": "off_01J..."})
    sim_type = Text(required=True, max_length=16, validate=validate.OneOf(("esim",)))


class EsimSchema(Schema):
    iccid = fields.String()
    state = fields.String(allow_none=True)
    activation_code = fields.String(allow_none=True, metadata={"description": "LPA:1$<SM-DP+ address>$<matching id>"})
    matching_id = fields.String(allow_none=True)
    qr_code_url = fields.String(allow_none=True)


class SubscriptionSchema(Schema):
    id = fields.String()
    customer = fields.String(attribute="customer_id")
    offer = fields.String(attribute="offer_id")
    sim_type = fields.String()
    status = fields.String()
    msisdn = fields.String(allow_none=True)
    iccid = fields.String(allow_none=True)
    esim = fields.Nested(EsimSchema, allow_none=True)
    failure_code = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    activated_at = fields.AwareDateTime(allow_none=True)


class SubscriptionListArgs(PageArgs):
    customer = Text(load_default=None, allow_none=False, min_length=1, max_length=64)
    status = Text(load_default=None, allow_none=False, min_length=1, max_length=32)
