"""The HTTP shapes of usage, billing runs and invoices."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mvne.charging.rating import Service
from mvne.infra.fields import DateTime, DecimalString, Integer, Period, Text
from mvne.infra.web.pagination import PageArgs


class UsageRecordInSchema(Schema):
    # The document says what `_consistent` checks: a record names its line by subscription or msisdn.
    openapi_extra: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["subscription"], "properties": {"subscription": {"type": "string"}}},
            {"required": ["msisdn"], "properties": {"msisdn": {"type": "string"}}},
        ]
    }

    record_id = Text(required=True, min_length=1, max_length=128)
    subscription = Text(load_default=None, min_length=1, max_length=64, metadata={"example": "sub_01J..."})
    msisdn = Text(
        load_default=None,
        max_length=16,
        pattern=r"^\+[1-9][0-9]{6,14}$",
        pattern_error="Must be an E.164 number such as +33612345678.",
    )
    service = fields.Enum(Service, by_value=True, required=True)
    started_at = DateTime(required=True)
    volume = Integer(
        load_default=None,
        validate=validate.Range(0, 10**13),
        metadata={"description": "Data volume in bytes (service data)."},
    )
    duration = Integer(
        load_default=None,
        validate=validate.Range(0, 10**7),
        metadata={"description": "Call duration in seconds (service voice)."},
    )
    count = Integer(
        load_default=None,
        validate=validate.Range(0, 10**6),
        metadata={"description": "Messages (service sms); 1 when absent."},
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("subscription") and not data.get("msisdn"):
            raise ValidationError("Give subscription or msisdn.", "subscription")
        service = data["service"]
        needed = {Service.DATA: "volume", Service.VOICE: "duration", Service.SMS: None}[service]
        if needed and data.get(needed) is None:
            raise ValidationError(f"Required for service {service.value}.", needed)


class UsageBatchSchema(Schema):
    records = fields.List(fields.Nested(UsageRecordInSchema), required=True, validate=validate.Length(1, 5000))


class UsageRejectionSchema(Schema):
    index = fields.Integer()
    record_id = fields.String()
    code = fields.String()
    reason = fields.String()


class UsageBatchResultSchema(Schema):
    accepted = fields.Integer()
    duplicates = fields.Integer()
    rejected = fields.List(fields.Nested(UsageRejectionSchema))


class BillingRunCreateSchema(Schema):
    period = Period(required=True)


class BillingRunSchema(Schema):
    id = fields.String()
    period = fields.String()
    status = fields.String(metadata={"enum": ["pending", "running", "completed", "completed_with_failures", "failed"]})
    failure_reason = fields.String(
        allow_none=True, metadata={"description": "Why the run failed (its job failed past its retries)."}
    )
    customers_total = fields.Integer()
    customers_done = fields.Integer()
    invoices_created = fields.Integer()
    invoices_existing = fields.Integer()
    failures = fields.Integer()
    progress = fields.Method("_progress", metadata={"type": "number"})
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    completed_at = fields.AwareDateTime(allow_none=True)

    def _progress(self, run: Any) -> float:
        if run.status == "completed":
            return 1.0
        return round(run.customers_done / run.customers_total, 4) if run.customers_total else 0.0


class InvoiceLineSchema(Schema):
    kind = fields.String()
    description = fields.String()
    quantity = DecimalString()
    unit = fields.String()
    unit_price = DecimalString(allow_none=True)
    amount = DecimalString()
    period = fields.String(
        attribute="service_period",
        allow_none=True,
        metadata={"description": "The usage's own period (YYYY-MM) when it was rated after that period was invoiced."},
    )


class _InvoiceFiguresSchema(Schema):
    """What an issued invoice and a preview share: the period, the currency and the totals."""

    period = fields.String()
    period_start = fields.Date()
    period_end = fields.Date()
    currency = fields.String()
    subtotal = DecimalString()
    tax = DecimalString()
    tax_rate = DecimalString()
    total = DecimalString()


class InvoiceSchema(_InvoiceFiguresSchema):
    id = fields.String()
    number = fields.String()
    customer = fields.String(attribute="customer_id")
    billing_run = fields.String(attribute="billing_run_id", allow_none=True)
    status = fields.String()
    lines = fields.List(fields.Nested(InvoiceLineSchema))
    issued_at = fields.AwareDateTime()
    due_date = fields.Date()
    pdf_url = fields.String()


class UpcomingInvoiceLineSchema(InvoiceLineSchema):
    period = fields.String(
        allow_none=True,
        metadata={"description": "The usage's own period (YYYY-MM) when it is earlier than the upcoming invoice's."},
    )


class UpcomingInvoiceSchema(_InvoiceFiguresSchema):
    customer = fields.String()
    period_ends_at = fields.AwareDateTime(metadata={"description": "When the period closes and can be billed."})
    lines = fields.List(fields.Nested(UpcomingInvoiceLineSchema))


class InvoiceListArgs(PageArgs):
    customer = Text(load_default=None, allow_none=False, min_length=1, max_length=64)
    period = Period(load_default=None, allow_none=False)


class ServiceUsageSchema(Schema):
    service = fields.String()
    unit = fields.String()
    allowance = fields.Integer()
    quantity = fields.Integer()
    allowance_used = fields.Integer()
    overage_quantity = fields.Integer()
    overage_amount = DecimalString()
    records = fields.Integer()


class UsageSummarySchema(Schema):
    subscription = fields.String()
    period = fields.String()
    services = fields.List(fields.Nested(ServiceUsageSchema))


class UsageSummaryArgs(Schema):
    period = Period(
        load_default=None, allow_none=False, metadata={"description": "YYYY-MM; the current period when absent."}
    )
