"""Rate cards of the calling tenant: cards, dated versions, lines (JSON or a CSV import), publishing, quotes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from flask_smorest import Blueprint
from sqlalchemy import select

from mvne.charging import ratecard_service as service
from mvne.charging.errors import (
    CsvRequired,
    EventNotPriced,
    InvalidEffectiveDates,
    InvalidRateCard,
    RateCardNotFound,
    RateCardRejected,
    RateCardVersionEmpty,
    RateCardVersionNotFound,
    RateCardVersionPublished,
    VersionDatesOverlap,
)
from mvne.charging.ratecard_models import RateCard, RateCardLine, RateCardVersion
from mvne.charging.ratecard_schemas import (
    PricedEventSchema,
    QuoteSchema,
    RateCardCreateSchema,
    RateCardDetailSchema,
    RateCardSchema,
    RateCardVersionCreateSchema,
    RateCardVersionSchema,
    RateLineSchema,
    priced_view,
)
from mvne.infra.fields import as_date
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants.service import get_tenant

rate_cards = Blueprint(
    "rate_cards",
    __name__,
    url_prefix="/v1/rate-cards",
    description="What calls, messages and data cost per destination: dated versions of E.164 prefix lines.",
)

CSV_EXAMPLE = (
    "prefix,zone,service,connect_fee,price,first_increment,next_increment,time_band,zero_rated,premium,premium_cap,"
    "roaming\n"
    "33,France,voice,0.00,0.10,60,60,,false,false,,\n"
    "336,France mobile,voice,0.02,0.12,30,6,peak,false,false,,\n"
    "112,Emergency,voice,0,0,1,1,,true,false,,\n"
    "3389,Premium,voice,0.50,1.20,1,1,,false,true,5.00,\n"
    "*,Anywhere,data,0,0.010,100,100,,false,false,,\n"
    "*,Anywhere,data,0,0.002,1,1,,false,false,,eu\n"
)


@rate_cards.post("")
@require("rates:write")
@problems(InvalidRateCard)
@rate_cards.arguments(
    RateCardCreateSchema,
    example={"name": "Retail 2026", "network_agreement_id": None, "rounding_mode": "half_up", "precision": 4},
)
@rate_cards.response(201, RateCardSchema)
def create_rate_card(body: dict[str, Any]) -> RateCard:
    """Create a rate card in the tenant's currency, with its rounding mode and precision (0 to 6 decimals).

    `network_agreement_id` ties it to one host network of the tenant's country (see GET
    /v1/network-agreements); null applies it whatever the host network. `purpose` wholesale makes it the
    host network's wholesale card (422 `invalid_rate_card` without `network_agreement_id`).
    """
    session = db_session()
    return service.create_rate_card(
        session,
        get_tenant(session, tenant_id()),
        name=body["name"],
        network_agreement_id=body["network_agreement_id"],
        purpose=body["purpose"],
        rounding_mode=body["rounding_mode"],
        precision=body["precision"],
    )


@rate_cards.get("")
@require("rates:read")
@rate_cards.arguments(PageArgs, location="query")
@rate_cards.response(200, page_schema(RateCardSchema, "RateCardPage"))
def list_rate_cards(args: dict[str, Any]) -> dict[str, Any]:
    """List rate cards, oldest first."""
    return paginate(db_session(), select(RateCard), RateCard.id, args, prefix="rcd")


@rate_cards.get("/<rate_card_id>")
@require("rates:read")
@problems(RateCardNotFound)
@rate_cards.response(200, RateCardDetailSchema)
def get_rate_card(rate_card_id: str) -> dict[str, Any]:
    """One rate card and its versions, by number."""
    session = db_session()
    card = service.get_rate_card(session, rate_card_id)
    view = {name: getattr(card, name) for name in RateCardSchema().fields}
    view["versions"] = service.versions_of(session, rate_card_id)
    return view


@rate_cards.post("/<rate_card_id>/versions")
@require("rates:write")
@problems(RateCardNotFound, RateCardRejected, InvalidEffectiveDates)
@rate_cards.arguments(
    RateCardVersionCreateSchema,
    example={
        "effective_from": "2026-04-01",
        "effective_to": None,
        "time_bands": [
            {"name": "peak", "days": [1, 2, 3, 4, 5], "start": "08:00", "end": "20:00"},
            {"name": "offpeak", "days": [1, 2, 3, 4, 5], "start": "20:00", "end": "24:00"},
        ],
        "lines": [
            {
                "prefix": "33",
                "zone": "France",
                "service": "voice",
                "connect_fee": "0.00",
                "price": "0.10",
                "first_increment": 60,
                "next_increment": 60,
            },
            {
                "prefix": "336",
                "zone": "France mobile",
                "service": "voice",
                "price": "0.12",
                "first_increment": 30,
                "next_increment": 6,
                "time_band": "peak",
            },
            {
                "prefix": "112",
                "zone": "Emergency",
                "service": "voice",
                "price": "0",
                "first_increment": 1,
                "next_increment": 1,
                "zero_rated": True,
            },
        ],
    },
)
@rate_cards.response(201, RateCardVersionSchema)
def create_version(body: dict[str, Any], rate_card_id: str) -> RateCardVersion:
    """Create a draft version: its dates (local days in the tenant's time zone), time bands and lines.

    All or nothing: any wrong line answers 422 `rate_card_rejected` with `errors.lines`, one entry per
    problem (`line` numbered from 1, `field`, `code` such as `overlapping_prefix`, `invalid_increment`,
    `invalid_prefix`, `invalid_price`, `unknown_time_band`, and `detail`), `errors.total` counting them
    all (at most 1000 are listed). A large card is imported as CSV with PUT .../lines.
    """
    session = db_session()
    return service.create_version(
        session,
        get_tenant(session, tenant_id()),
        rate_card_id,
        effective_from=dt.date.fromisoformat(body["effective_from"]),
        effective_to=as_date(body["effective_to"]),
        time_bands=body["time_bands"],
        lines=body["lines"],
    )


@rate_cards.get("/<rate_card_id>/versions/<version_id>")
@require("rates:read")
@problems(RateCardNotFound, RateCardVersionNotFound)
@rate_cards.response(200, RateCardVersionSchema)
def get_version(rate_card_id: str, version_id: str) -> RateCardVersion:
    """One version, with its time bands and line count."""
    return service.get_version(db_session(), rate_card_id, version_id)


@rate_cards.delete("/<rate_card_id>/versions/<version_id>")
@require("rates:write")
@problems(RateCardNotFound, RateCardVersionNotFound, RateCardVersionPublished)
@rate_cards.response(204)
def delete_version(rate_card_id: str, version_id: str) -> None:
    """Delete a draft version and its lines; a published one is kept (409 `rate_card_version_published`)."""
    service.delete_version(db_session(), rate_card_id, version_id)


@rate_cards.get("/<rate_card_id>/versions/<version_id>/lines")
@require("rates:read")
@problems(RateCardNotFound, RateCardVersionNotFound)
@rate_cards.arguments(PageArgs, location="query")
@rate_cards.response(200, page_schema(RateLineSchema, "RateLinePage"))
def list_lines(args: dict[str, Any], rate_card_id: str, version_id: str) -> dict[str, Any]:
    """A version's lines, by service, prefix and band."""
    session = db_session()
    service.get_version(session, rate_card_id, version_id)
    stmt = select(RateCardLine).where(RateCardLine.version_id == version_id)
    return paginate(session, stmt, RateCardLine.id, args, prefix="rcl")


@rate_cards.put("/<rate_card_id>/versions/<version_id>/lines")
@require("rates:write")
@problems(RateCardNotFound, RateCardVersionNotFound, RateCardVersionPublished, RateCardRejected, CsvRequired)
@rate_cards.doc(
    requestBody={
        "required": True,
        "description": "CSV (RFC 4180, UTF-8), the first line naming the columns: prefix, zone, service, price, "
        "first_increment, next_increment, and optionally connect_fee, time_band, zero_rated, premium, premium_cap, "
        "roaming (eu or world: the line prices events made while roaming there; empty: at home).",
        "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
    }
)
@rate_cards.response(200, RateCardVersionSchema)
def import_lines(rate_card_id: str, version_id: str) -> RateCardVersion:
    """Replace a draft version's lines with a CSV file's, read as it streams in.

    All or nothing: any wrong line answers 422 `rate_card_rejected` with `errors.lines` (`line` is the
    file's line number, the header being line 1) and the version keeps the lines it had.
    """
    session = db_session()
    service.get_version(session, rate_card_id, version_id)  # another tenant's ids are not found, whatever the body
    if request.mimetype != "text/csv":
        raise CsvRequired("Send the lines as CSV, with Content-Type: text/csv.")
    return service.import_csv(session, rate_card_id, version_id, request.stream)


@rate_cards.post("/<rate_card_id>/versions/<version_id>/publish")
@require("rates:write")
@problems(RateCardNotFound, RateCardVersionNotFound, RateCardVersionEmpty, VersionDatesOverlap)
@rate_cards.response(200, RateCardVersionSchema)
def publish_version(rate_card_id: str, version_id: str) -> RateCardVersion:
    """Publish a draft version: from then on it never changes and prices events from its effective date.

    Refused with 409 `version_dates_overlap` when its dates overlap another published version's (a
    version without an end yields to the next one's start).
    """
    return service.publish_version(db_session(), rate_card_id, version_id)


@rate_cards.post("/<rate_card_id>/quote")
@require("rates:read")
@problems(RateCardNotFound, EventNotPriced)
@rate_cards.arguments(
    QuoteSchema,
    example={"service": "voice", "called": "+33612345678", "started_at": "2026-04-01T09:30:00+02:00", "quantity": 61},
)
@rate_cards.response(200, PricedEventSchema)
def quote(body: dict[str, Any], rate_card_id: str) -> dict[str, Any]:
    """Price a hypothetical event with the card's published versions, and explain every step.

    The version in effect at `started_at`, the time band of its local start (a call is rated in the
    band it starts in), the longest matching prefix, the billed quantity after increments, the exact
    amount, then the card's rounding, once. Nothing is recorded.
    """
    event = service.quote(
        db_session(),
        rate_card_id,
        service=body["service"],
        called=body["called"],
        started_at=body["started_at"],
        quantity=body["quantity"],
        roaming=body["roaming"],
    )
    return priced_view(event)
