"""The HTTP shapes of rate cards, their versions, lines and quotes."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from mvne.charging import ratecards
from mvne.infra.fields import DateTime, DecimalString, Integer, LocalDate, Text

TIME_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
# What a line's fields hold; the values are checked by the rate card service, which reports each bad line.
PREFIX_DESCRIPTION = "E.164 destination prefix without + (1 to 15 digits; a leading + is accepted), or * as default."
INCREMENT_DESCRIPTION = "Seconds (voice), KB of 1000 bytes (data), 1 (sms, mms); at least 1."
ROAMING_DESCRIPTION = (
    "eu or world: the line prices events made while roaming there (before the home lines); null: at home."
)


class RatedAmount(DecimalString):
    """An amount at the card's precision, its decimals kept: 0.1520 at 4 decimals, 1 at 0."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else f"{value:f}"


class RateCardCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200)
    network_agreement_id = Text(
        load_default=None,
        allow_none=True,
        max_length=40,
        metadata={"description": "The host network agreement the card prices for; null for any host network."},
    )
    purpose = fields.String(
        load_default="retail",
        validate=validate.OneOf(("retail", "wholesale")),
        metadata={
            "description": "retail: what subscribers pay (the default); wholesale: what the host network charges the "
            "tenant for every record, priced beside retail for the margin; a wholesale card needs network_agreement_id."
        },
    )
    rounding_mode = fields.String(
        load_default="half_up",
        validate=validate.OneOf(ratecards.ROUNDING_MODES),
        metadata={"description": "How an event's amount is rounded, once, to `precision` decimals."},
    )
    precision = Integer(
        load_default=6,
        validate=validate.Range(0, ratecards.MAX_PRECISION),
        metadata={"description": "Decimals of a rated amount, 0 to 6."},
    )


class RateCardVersionSummarySchema(Schema):
    id = fields.String()
    number = fields.Integer()
    status = fields.String(metadata={"enum": ["draft", "published"]})
    effective_from = LocalDate()
    effective_to = LocalDate(allow_none=True)
    line_count = fields.Integer()


class RateCardSchema(Schema):
    id = fields.String()
    name = fields.String()
    network_agreement_id = fields.String(allow_none=True)
    purpose = fields.String(metadata={"enum": ["retail", "wholesale"]})
    currency = fields.String()
    rounding_mode = fields.String(metadata={"enum": list(ratecards.ROUNDING_MODES)})
    precision = fields.Integer()
    created_at = fields.AwareDateTime()


class RateCardDetailSchema(RateCardSchema):
    versions = fields.List(fields.Nested(RateCardVersionSummarySchema))


class TimeBandSchema(Schema):
    name = Text(required=True, min_length=1, max_length=32, metadata={"example": "peak"})
    days = fields.List(
        Integer(validate=validate.Range(1, 7)),
        required=True,
        validate=validate.Length(1, 7),
        metadata={"description": "ISO weekdays: 1 is Monday, 7 Sunday."},
    )
    start = Text(required=True, max_length=5, pattern=TIME_PATTERN, metadata={"example": "08:00"})
    end = Text(
        required=True,
        max_length=5,
        pattern=TIME_PATTERN,
        metadata={"example": "20:00", "description": "Exclusive; 24:00 for the end of the day."},
    )


class RateLineInSchema(Schema):
    prefix = Text(required=True, max_length=16, metadata={"description": PREFIX_DESCRIPTION, "example": "3361"})
    zone = Text(required=True, max_length=64, metadata={"example": "France mobile"})
    service = Text(required=True, max_length=10, metadata={"enum": list(ratecards.SERVICES)})
    connect_fee = Text(load_default=None, allow_none=True, max_length=24, metadata={"example": "0.00"})
    price = Text(
        required=True,
        max_length=24,
        metadata={"description": "Per minute (voice), per message (sms, mms), per MB (data).", "example": "0.12"},
    )
    first_increment = Integer(required=True, metadata={"description": INCREMENT_DESCRIPTION})
    next_increment = Integer(required=True, metadata={"description": INCREMENT_DESCRIPTION})
    time_band = Text(load_default=None, allow_none=True, max_length=32)
    zero_rated = fields.Boolean(load_default=False)
    premium = fields.Boolean(load_default=False)
    premium_cap = Text(
        load_default=None,
        allow_none=True,
        max_length=24,
        metadata={"description": "A premium line's largest amount per event."},
    )
    roaming = Text(
        load_default=None,
        allow_none=True,
        max_length=10,
        metadata={"description": ROAMING_DESCRIPTION, "enum": [*ratecards.ROAMING_ZONES, None]},
    )


class RateCardVersionCreateSchema(Schema):
    effective_from = LocalDate(
        required=True, metadata={"description": "First day it applies, from local midnight in the tenant's time zone."}
    )
    effective_to = LocalDate(
        load_default=None,
        allow_none=True,
        metadata={"description": "First day it no longer applies; null: until the next published version starts."},
    )
    time_bands = fields.List(fields.Nested(TimeBandSchema), load_default=list, validate=validate.Length(max=100))
    lines = fields.List(
        fields.Nested(RateLineInSchema),
        load_default=list,
        metadata={"description": "The lines, numbered from 1 in a rejection; a large card is sent as CSV instead."},
    )


class RateLineSchema(Schema):
    id = fields.String()
    prefix = fields.String()
    zone = fields.String()
    service = fields.String()
    connect_fee = DecimalString()
    price = DecimalString()
    first_increment = fields.Integer()
    next_increment = fields.Integer()
    time_band = fields.Function(lambda line: line.time_band or None, metadata={"type": ["string", "null"]})
    zero_rated = fields.Boolean()
    premium = fields.Boolean()
    premium_cap = DecimalString(allow_none=True)
    roaming = fields.Function(lambda line: line.roaming or None, metadata={"type": ["string", "null"]})


class RateCardVersionSchema(RateCardVersionSummarySchema):
    rate_card_id = fields.String()
    effective_from_at = fields.AwareDateTime(metadata={"description": "The UTC instant of effective_from's midnight."})
    effective_to_at = fields.AwareDateTime(allow_none=True)
    timezone = fields.String()
    time_bands = fields.List(fields.Nested(TimeBandSchema))
    created_at = fields.AwareDateTime()
    published_at = fields.AwareDateTime(allow_none=True)


class QuoteSchema(Schema):
    service = fields.String(required=True, validate=validate.OneOf(ratecards.SERVICES))
    called = Text(
        load_default=None,
        allow_none=True,
        max_length=16,
        pattern=r"^\+?[0-9]{1,15}$",
        pattern_error="Must be an E.164 number such as +33612345678.",
        metadata={"description": "The called number (voice, sms, mms); null for data."},
    )
    started_at = DateTime(required=True)
    quantity = Integer(
        required=True,
        validate=validate.Range(0, 10**13),
        metadata={"description": "Seconds (voice), messages (sms, mms) or bytes (data)."},
    )
    roaming = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(ratecards.ROAMING_ZONES),
        metadata={"description": "eu or world when the subscriber roams there; null at home."},
    )


class QuotedLineSchema(Schema):
    prefix = fields.String()
    zone = fields.String()
    connect_fee = DecimalString()
    price = DecimalString()
    first_increment = fields.Integer()
    next_increment = fields.Integer()
    time_band = fields.String(allow_none=True)
    zero_rated = fields.Boolean()
    premium = fields.Boolean()
    premium_cap = DecimalString(allow_none=True)
    roaming = fields.String(allow_none=True)


class PricedEventSchema(Schema):
    version_id = fields.String()
    version_number = fields.Integer()
    service = fields.String()
    called = fields.String(allow_none=True)
    started_at = fields.AwareDateTime()
    local_start = fields.String(metadata={"description": "The start in the version's time zone, with its offset."})
    time_band = fields.String(allow_none=True, metadata={"description": "The band of the local start time."})
    roaming = fields.String(allow_none=True, metadata={"description": "Where the subscriber roamed; null at home."})
    line = fields.Nested(QuotedLineSchema)
    quantity = fields.Integer()
    billed_quantity = fields.Integer(metadata={"description": "The quantity after increments, in the same unit."})
    unit = fields.String(metadata={"enum": ["second", "message", "byte"]})
    unrounded_amount = fields.String(metadata={"description": "The exact amount before rounding, as a decimal."})
    amount = RatedAmount(metadata={"description": "Rounded once, with the card's mode, to its precision."})
    currency = fields.String()
    rounding_mode = fields.String()
    precision = fields.Integer()
    capped = fields.Boolean()
    reason = fields.String(metadata={"enum": ["rated", "zero_rated", "premium_capped", "nothing_used"]})
    explanation = fields.String()


def priced_view(event: ratecards.PricedEvent) -> dict[str, Any]:
    """What a quote answers: the priced event with each step of its calculation."""
    return {
        "version_id": event.version_id,
        "version_number": event.version_number,
        "service": event.service,
        "called": event.called,
        "started_at": event.started_at,
        "local_start": event.local_start.isoformat(),
        "time_band": event.time_band,
        "roaming": event.roaming,
        "line": event.line,
        "quantity": event.quantity,
        "billed_quantity": event.billed_quantity,
        "unit": ratecards.METERED_UNIT[event.service],
        "unrounded_amount": f"{event.unrounded_amount:f}",
        "amount": event.amount,
        "currency": event.currency,
        "rounding_mode": event.rounding_mode,
        "precision": event.precision,
        "capped": event.capped,
        "reason": event.reason,
        "explanation": event.explanation(),
    }
