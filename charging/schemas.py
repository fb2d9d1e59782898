"""The HTTP shapes of usage, billing runs and invoices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mvne.charging.models import SOURCE_LENGTH
from mvne.charging.rating import Service
from mvne.infra.fields import DateTime, DecimalString, FastList, Integer, Period, Text
from mvne.infra.web.pagination import PageArgs

PLMN_PATTERN = r"^[0-9]{3}-?[0-9]{2,3}$"
CALLED_PATTERN = r"^\+?[0-9]{1,15}$"
MSISDN_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# A record's quantity: out-of-range values are not refused by the schema, they are kept as rejected
# (invalid_quantity); these bounds only keep absurd numbers out of the process.
QUANTITY_BOUND = 10**15
RATING_GROUP_MAX = 2**32 - 1


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
        pattern=MSISDN_PATTERN,
        pattern_error="Must be an E.164 number such as +33612345678.",
    )
    service = Text(
        required=True,
        min_length=1,
        max_length=20,
        metadata={
            "description": "data, voice, sms or mms; a record of another service is rejected (unknown_service).",
            "example": "data",
        },
    )
    started_at = DateTime(required=True)
    # Out-of-range quantities are not refused here: such a record is kept as rejected (invalid_quantity).
    volume = Integer(
        load_default=None,
        validate=validate.Range(-QUANTITY_BOUND, QUANTITY_BOUND),
        metadata={"description": "Data volume in bytes (service data); 0 to 10 TB."},
    )
    duration = Integer(
        load_default=None,
        validate=validate.Range(-QUANTITY_BOUND, QUANTITY_BOUND),
        metadata={"description": "Call duration in seconds (service voice); 0 to 86,400."},
    )
    count = Integer(
        load_default=None,
        validate=validate.Range(-QUANTITY_BOUND, QUANTITY_BOUND),
        metadata={"description": "Messages (service sms or mms), 1 to 100; 1 when absent."},
    )
    visited_plmn = Text(
        load_default=None,
        max_length=7,
        pattern=PLMN_PATTERN,
        pattern_error="Must be an MCC-MNC such as 26201 or 262-01.",
        metadata={
            "description": "The visited network (MCC-MNC) when roaming; absent or the host network's country is home.",
            "example": "26201",
        },
    )
    called_number = Text(
        load_default=None,
        max_length=16,
        pattern=CALLED_PATTERN,
        pattern_error="Must be an E.164 number such as +33612345678.",
        metadata={
            "description": "The number called or messaged (voice, sms, mms): the rate card prices by its prefix."
        },
    )
    rating_group = Integer(
        load_default=None,
        validate=validate.Range(0, RATING_GROUP_MAX),
        metadata={"description": "The network's rating group (data), kept on the record."},
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("subscription") and not data.get("msisdn"):
            raise ValidationError("Give subscription or msisdn.", "subscription")
        needed = {Service.DATA.value: "volume", Service.VOICE.value: "duration"}.get(data["service"])
        if needed and data.get(needed) is None:
            raise ValidationError(f"Required for service {data['service']}.", needed)


class UsageBatchSchema(Schema):
    records = FastList(fields.Nested(UsageRecordInSchema), required=True, validate=validate.Length(1, 5000))


REASON_DESCRIPTION = (
    "unknown_line, line_not_active_then, invalid_quantity, unknown_service, in_the_future, too_old, malformed "
    "or no_rate (the rate card has no rate for it)."
)


class RejectedUsageSchema(Schema):
    index = fields.Integer()
    record_id = fields.String()
    code = fields.String(metadata={"description": REASON_DESCRIPTION})
    reason = fields.String()
    rejection = fields.String(metadata={"description": "The kept rejection: fix it and re-rate it later."})


class UsageOutcomeSchema(Schema):
    index = fields.Integer()
    record_id = fields.String()
    outcome = fields.String(metadata={"enum": ["rated", "duplicate", "rejected"]})
    usage_record = fields.String(
        allow_none=True, metadata={"description": "The rated record: this one, or the one already accepted."}
    )
    rejection = fields.String(allow_none=True)
    code = fields.String(allow_none=True, metadata={"description": REASON_DESCRIPTION})
    reason = fields.String(allow_none=True)


class UsageBatchResultSchema(Schema):
    accepted = fields.Integer()
    duplicates = fields.Integer()
    rejected = fields.List(fields.Nested(RejectedUsageSchema))
    records = fields.List(
        fields.Nested(UsageOutcomeSchema), metadata={"description": "What became of each record, in the batch order."}
    )


class UsageRejectionSchema(Schema):
    id = fields.String()
    record_id = fields.String()
    source = fields.String(metadata={"description": '"api", or "file:" and the usage file\'s key.'})
    position = fields.Integer(allow_none=True, metadata={"description": "Index in the batch, or line in the file."})
    raw = fields.Dict(metadata={"description": "The record as received."})
    fixes = fields.Dict(metadata={"description": "Fields changed since, applied when re-rated."})
    record = fields.Method("_record", metadata={"type": "object", "description": "The record as it will be re-rated."})
    reason_code = fields.String(metadata={"description": REASON_DESCRIPTION})
    reason_detail = fields.String()
    status = fields.String(metadata={"enum": ["open", "fixed", "duplicate", "discarded"]})
    received_at = fields.AwareDateTime()
    resolved_at = fields.AwareDateTime(allow_none=True)
    usage_record = fields.String(
        attribute="usage_record_id", allow_none=True, metadata={"description": "The rated record, once resolved."}
    )

    def _record(self, rejection: Any) -> dict[str, Any]:
        return {**rejection.raw, **(rejection.fixes or {})}


class UsageRejectionListArgs(PageArgs):
    status = Text(
        load_default="open",
        validate=validate.OneOf(["open", "fixed", "duplicate", "discarded", "all"]),
        metadata={"description": "open (the default), fixed, duplicate, discarded, or all."},
    )
    reason = Text(load_default=None, allow_none=False, min_length=1, max_length=40)
    source = Text(load_default=None, allow_none=False, min_length=1, max_length=SOURCE_LENGTH)


class UsageRejectionFixSchema(Schema):
    subscription = Text(min_length=1, max_length=64)
    msisdn = Text(
        max_length=16,
        pattern=MSISDN_PATTERN,
        pattern_error="Must be an E.164 number such as +33612345678.",
    )
    service = Text(min_length=1, max_length=20, validate=validate.OneOf([s.value for s in Service]))
    started_at = DateTime()
    quantity = Integer(
        validate=validate.Range(-QUANTITY_BOUND, QUANTITY_BOUND),
        metadata={"description": "Bytes, seconds or messages, by service."},
    )
    visited_plmn = Text(max_length=7, pattern=PLMN_PATTERN, pattern_error="Must be an MCC-MNC such as 26201.")
    called_number = Text(
        max_length=16, pattern=CALLED_PATTERN, pattern_error="Must be an E.164 number such as +33612345678."
    )

    @validates_schema
    def _one_line(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "subscription" in data and "msisdn" in data:
            raise ValidationError("Give subscription or msisdn, not both.", "msisdn")
        if not data:
            raise ValidationError("Give at least one field to fix.", "quantity")


class WideDecimal(fields.Field):
    """A decimal with up to 20 decimals as a JSON string ("0.11666666666666666667"), read only."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]+(\.[0-9]{1,20})?$"}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, dump_only=True, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return format(Decimal(value).quantize(Decimal("1e-20")).normalize(), "f")


class UsageOfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()
    currency = fields.String()
    allowance = fields.Integer(metadata={"description": "Included per period, in the record's unit."})
    allowance_per_period = fields.Integer(metadata={"description": "Included per period, in the priced unit."})
    overage_price = DecimalString(metadata={"description": "Per priced unit beyond the allowance."})
    priced_unit = fields.String(metadata={"enum": ["MB", "minute", "message"]})


class AllowanceUseSchema(Schema):
    before = fields.Integer(metadata={"description": "Left in the period before this record."})
    used = fields.Integer()
    after = fields.Integer()


class ConsumedBucketSchema(Schema):
    bucket = fields.String()
    origin = fields.String(allow_none=True, metadata={"description": "plan, rollover, addon or topup."})
    zone = fields.String(allow_none=True, metadata={"description": "home, eu or world."})
    quantity = fields.Integer(metadata={"description": "Taken from this bucket, in the record's unit."})


class PricedLineSchema(Schema):
    rate_card = fields.String()
    rate_card_name = fields.String(allow_none=True)
    version = fields.String()
    version_number = fields.Integer()
    prefix = fields.String(allow_none=True, metadata={"description": "The longest prefix that matched, or *."})
    destination_zone = fields.String(allow_none=True, metadata={"description": "The rate card line's zone."})
    roaming_rate = fields.String(
        allow_none=True,
        metadata={"description": "eu or world when a roaming line of the card priced it; null for a home line."},
    )
    time_band = fields.String(allow_none=True, metadata={"description": "The band of the record's local start."})
    first_increment = fields.Integer(allow_none=True)
    next_increment = fields.Integer(allow_none=True)
    quantity = fields.Integer(metadata={"description": "The quantity priced on the card."})
    billed_quantity = fields.Integer(allow_none=True, metadata={"description": "Rounded up to the increments."})
    connect_fee = DecimalString(allow_none=True)
    connect_fee_applied = fields.Boolean(
        metadata={"description": "Retail: only when no allowance covered any of the record."}
    )
    unit_price = DecimalString(allow_none=True)
    zero_rated = fields.Boolean()
    premium_cap = DecimalString(allow_none=True)
    rounding = fields.String(allow_none=True)
    amount_exact = WideDecimal(allow_none=True, metadata={"description": "Before rounding."})
    amount = DecimalString(allow_none=True)


class UsageRecordSchema(Schema):
    id = fields.String()
    record_id = fields.String()
    subscription = fields.String()
    msisdn = fields.String()
    service = fields.String()
    started_at = fields.AwareDateTime()
    quantity = fields.Integer()
    unit = fields.String(metadata={"enum": ["bytes", "seconds", "messages"]})
    period = fields.String()
    zone = fields.String(metadata={"enum": ["home", "eu", "world"]})
    visited_plmn = fields.String(allow_none=True)
    called_number = fields.String(allow_none=True)
    rating_group = fields.Integer(allow_none=True)
    offer = fields.Nested(UsageOfferSchema, allow_none=True)
    offer_version = fields.String(allow_none=True, metadata={"description": "The offer version whose terms rated it."})
    allowance = fields.Nested(AllowanceUseSchema, allow_none=True)
    buckets = fields.List(
        fields.Nested(ConsumedBucketSchema), metadata={"description": "The buckets consumed, in order, and how much."}
    )
    throttled = fields.Boolean(metadata={"description": "It took an unlimited allowance past its fair use."})
    overage_quantity = fields.Integer()
    overage_priced_units = WideDecimal(metadata={"description": "The overage in priced units (MB, minutes...)."})
    overage_unit_price = DecimalString(allow_none=True)
    priced_by = fields.String(
        metadata={
            "enum": ["allowance", "rate_card", "usage_price"],
            "description": "What priced it: its allowances alone, the retail rate card, or the offer's usage price.",
        }
    )
    retail = fields.Nested(PricedLineSchema, allow_none=True, metadata={"description": "The retail rate card line."})
    amount_exact = WideDecimal(allow_none=True, metadata={"description": "The amount before rounding."})
    amount = DecimalString(metadata={"description": "The retail amount, rounded once as the rate card states."})
    rounding = fields.String()
    wholesale = fields.Nested(
        PricedLineSchema,
        allow_none=True,
        metadata={"description": "The whole quantity on the host network's wholesale card."},
    )
    wholesale_note = fields.String(allow_none=True)
    margin = DecimalString(allow_none=True, metadata={"description": "Retail minus wholesale."})
    rerated_count = fields.Integer(metadata={"description": "How many re-ratings changed it."})
    source = fields.String(metadata={"description": "api, or file: and the usage file's storage key."})
    position = fields.Integer(allow_none=True, metadata={"description": "Its line in its usage file (file records)."})
    received_at = fields.AwareDateTime()
    invoice = fields.String(allow_none=True, metadata={"description": "The invoice that billed it, once billed."})


class UsageRecordListArgs(PageArgs):
    subscription = Text(load_default=None, allow_none=False, min_length=1, max_length=64)
    period = Period(load_default=None, allow_none=False)
    service = Text(load_default=None, allow_none=False, validate=validate.OneOf([s.value for s in Service]))


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


class BalanceBucketSchema(Schema):
    id = fields.String()
    service = fields.String(metadata={"enum": ["data", "voice", "sms", "mms"]})
    zone = fields.String(metadata={"enum": ["home", "eu", "world"]})
    origin = fields.String(metadata={"enum": ["plan", "rollover", "addon", "topup"]})
    period = fields.String(allow_none=True)
    granted = fields.Integer(allow_none=True, metadata={"description": "null: unlimited."})
    used = fields.Integer()
    remaining = fields.Integer(allow_none=True, metadata={"description": "null: unlimited."})
    unlimited = fields.Boolean()
    fair_use = fields.Integer(allow_none=True)
    roam_like_at_home = fields.Boolean()
    eu_fair_use = fields.Integer(allow_none=True)
    eu_used = fields.Integer()
    percent_used = DecimalString(allow_none=True, metadata={"description": "Of the granted quantity; null unlimited."})
    priority = fields.Integer()
    valid_from = fields.AwareDateTime()
    valid_to = fields.AwareDateTime()


class MoneyBalanceSchema(Schema):
    amount = DecimalString(minimum=None, metadata={"description": "Below zero only by usage reported unasked."})
    currency = fields.String()


class BalancesSchema(Schema):
    subscription = fields.String()
    period = fields.String()
    buckets = fields.List(
        fields.Nested(BalanceBucketSchema), metadata={"description": "Valid now, in the order they are consumed."}
    )
    money = fields.Nested(
        MoneyBalanceSchema,
        allow_none=True,
        metadata={"description": "The prepaid money balance; null for a postpaid line (no top-up yet)."},
    )


class SpendCapSetSchema(Schema):
    amount = DecimalString(required=True, metadata={"example": "30.00", "description": "Per billing period."})
    action = fields.String(
        load_default="stop",
        validate=validate.OneOf(["stop", "throttle"]),
        metadata={"description": "At the cap: `stop` ends the service, `throttle` restricts it (RESTRICT_ACCESS)."},
    )


class SpendCapSchema(Schema):
    amount = DecimalString(allow_none=True, metadata={"description": "Null: no cap."})
    action = fields.String(allow_none=True, metadata={"enum": ["stop", "throttle", None]})
    period = fields.String()
    spent = DecimalString(metadata={"description": "Rated beyond the buckets this period (records written so far)."})
    remaining = DecimalString(allow_none=True)


class VoucherBatchCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200, metadata={"example": "Shop cards, December"})
    amount = DecimalString(required=True, metadata={"example": "10.00", "description": "What each voucher is worth."})
    count = Integer(required=True, validate=validate.Range(1, 10_000))
    expires_at = DateTime(load_default=None, allow_none=True)


class VoucherBatchSchema(Schema):
    id = fields.String()
    name = fields.String()
    amount = DecimalString()
    currency = fields.String()
    count = fields.Integer()
    expires_at = fields.AwareDateTime(allow_none=True)
    status = fields.String(metadata={"enum": ["active", "cancelled"]})
    created_at = fields.AwareDateTime()
    unused = fields.Integer()
    redeemed = fields.Integer()


class VoucherBatchCreatedSchema(VoucherBatchSchema):
    codes = fields.List(fields.String(), metadata={"description": "The vouchers' codes: shown here once, never again."})


class VoucherRedeemSchema(Schema):
    code = Text(required=True, min_length=1, max_length=40, metadata={"example": "1234-5678-9012-3456"})


class TopUpCreateSchema(Schema):
    amount = DecimalString(required=True, metadata={"example": "10.00"})
    description = Text(load_default="Top-up", min_length=1, max_length=200)


class BalanceMovementSchema(Schema):
    id = fields.String()
    subscription = fields.String(attribute="subscription_id")
    kind = fields.String(metadata={"enum": ["top_up", "usage", "refund", "third_party"]})
    amount = DecimalString(minimum=None, metadata={"description": "Signed: a top-up adds, usage takes away."})
    balance_after = DecimalString(minimum=None)
    description = fields.String()
    records = fields.Integer(metadata={"description": "Usage records a usage movement paid for."})
    created_at = fields.DateTime()


class MyBalancesSchema(Schema):
    lines = fields.List(fields.Nested(BalancesSchema))


class ReratingRunCreateSchema(Schema):
    period = Period(required=True, metadata={"example": "2026-01"})
    subscription = Text(load_default=None, min_length=1, max_length=64, metadata={"description": "One line only."})


class ReratingRunSchema(Schema):
    id = fields.String()
    period = fields.String()
    subscription = fields.String(attribute="subscription_id", allow_none=True)
    status = fields.String(metadata={"enum": ["pending", "running", "completed", "failed"]})
    records_total = fields.Integer()
    records_done = fields.Integer()
    records_changed = fields.Integer(metadata={"description": "Records whose rating changed."})
    adjustments = fields.Integer(metadata={"description": "Invoiced records given an adjustment for the next invoice."})
    failure_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    completed_at = fields.AwareDateTime(allow_none=True)


USAGE_FILE_STATUSES = ["pending", "running", "processed", "failed"]


class UsageFileListArgs(PageArgs):
    status = Text(
        load_default=None,
        allow_none=False,
        validate=validate.OneOf(USAGE_FILE_STATUSES),
        metadata={"description": "Only the files in this state."},
    )


class UsageFileLineErrorSchema(Schema):
    line = fields.Integer(allow_none=True, metadata={"description": "The line of the file (its header is line 1)."})
    record_id = fields.String()
    code = fields.String(metadata={"description": REASON_DESCRIPTION})
    reason = fields.String()


class UsageFileSchema(Schema):
    id = fields.String()
    key = fields.String(metadata={"description": "Where the file was dropped in storage."})
    stored_at = fields.String(
        metadata={"description": "Where it is kept: moved out of the incoming folder once processed."}
    )
    status = fields.String(
        metadata={
            "enum": USAGE_FILE_STATUSES,
            "description": "pending (found, not cut yet), running (its segments are rated), processed, or failed "
            "(a job failed past its retries: see failure_reason; replaying its dead letter resumes the file).",
        }
    )
    segments_total = fields.Integer(metadata={"description": "Jobs the file was cut in (0 until it is cut)."})
    segments_done = fields.Integer()
    progress_percent = DecimalString(metadata={"description": "Segments done of all, 100 once processed."})
    records = fields.Integer(metadata={"description": "Records read so far (all of them once processed)."})
    accepted = fields.Integer()
    duplicates = fields.Integer()
    rejected = fields.Integer(metadata={"description": "Records rejected: kept for their tenants, or for no tenant."})
    errors = fields.List(
        fields.Nested(UsageFileLineErrorSchema),
        metadata={"description": "The first lines (up to 200) that could not be rated, in file order."},
    )
    failure_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    processed_at = fields.AwareDateTime(allow_none=True)
