"""Rejected usage, kept for the tenant: listed, fixed, re-rated through the same path as new usage, or discarded.

A re-rated record counts once, whatever happens meanwhile: it goes through `ingest_usage`, which looks for
its record id under the allowance locks, so a record accepted in the meantime makes the rejection a
duplicate of it rather than a second charge.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.catalog.terms import line_terms
from mvne.charging import engine, ratecards
from mvne.charging.errors import UsageRecordNotFound, UsageRejectionNotFound, UsageRejectionResolved
from mvne.charging.models import BalanceBucket, Invoice, UsageRecord, UsageRejection
from mvne.charging.ratecard_models import RateCard, RateCardVersion
from mvne.charging.ratecard_service import compile_stored_version
from mvne.charging.rating import Service, price_unit
from mvne.charging.usage import (
    UNITS,
    RecordOutcome,
    UsageInput,
    UsageWindow,
    ingest_usage,
)
from mvne.charging.zones import HOME
from mvne.infra.db import get_or_raise, utcnow
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

REJECTION_STATUSES = ("open", "fixed", "duplicate", "discarded")
# Fields a tenant may change on a rejected record before re-rating it.
FIXABLE = ("subscription", "msisdn", "service", "started_at", "quantity", "visited_plmn", "called_number")
PRICED_UNITS = {Service.DATA: "MB", Service.VOICE: "minute", Service.SMS: "message", Service.MMS: "message"}


def get_rejection(session: Session, rejection_id: str) -> UsageRejection:
    """A rejection of the session's tenant, or 404 `usage_rejection_not_found`."""
    return get_or_raise(session, UsageRejection, rejection_id, UsageRejectionNotFound, "usage rejection")


def record_of(rejection: UsageRejection) -> dict[str, Any]:
    """The record as it will be re-rated: as received, with the fixes applied."""
    return {**rejection.raw, **(rejection.fixes or {})}


def _open(session: Session, rejection_id: str) -> UsageRejection:
    rejection = get_rejection(session, rejection_id)
    if rejection.status != "open":
        raise UsageRejectionResolved(
            f"Usage rejection {rejection.id} is {rejection.status}: only an open rejection can be changed."
        )
    return rejection


def fix_rejection(session: Session, rejection_id: str, fixes: dict[str, Any]) -> UsageRejection:
    """Change fields of a rejected record (line, service, start, quantity) before re-rating it."""
    rejection = _open(session, rejection_id)
    merged = dict(rejection.fixes or {})
    for name in FIXABLE:
        if name in fixes:
            value = fixes[name]
            merged[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    # A record names its line one way: fixing one of the two drops the other.
    if "subscription" in fixes:
        merged["msisdn"] = None
    elif "msisdn" in fixes:
        merged["subscription"] = None
    rejection.fixes = merged
    session.flush()
    return rejection


def discard_rejection(session: Session, rejection_id: str) -> UsageRejection:
    """Give up on a rejected record: it stays listed, closed, and is never rated."""
    rejection = _open(session, rejection_id)
    rejection.status = "discarded"
    rejection.resolved_at = utcnow()
    record_event(session, "usage_rejection.discarded", rejection.id, {"record_id": rejection.record_id})
    session.flush()
    return rejection


def _quantity_of(record: dict[str, Any]) -> int:
    """The record's quantity; a usage file's own field when it was never read as one; -1 when there is none."""
    value = record.get("quantity")
    if value is None:
        value = record.get({"data": "volume_bytes", "voice": "duration_s"}.get(str(record.get("service")), ""), 1)
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _input_of(rejection: UsageRejection) -> UsageInput:
    record = record_of(rejection)
    refusal: tuple[str, str] | None = None
    try:
        started_at = dt.datetime.fromisoformat(str(record.get("started_at") or ""))
        if started_at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        started_at = utcnow()
        refusal = ("malformed", f"started_at {record.get('started_at')!r} is not a date-time with its offset: fix it.")
    return UsageInput(
        record_id=rejection.record_id,
        service=str(record.get("service") or ""),
        started_at=started_at,
        quantity=_quantity_of(record),
        subscription_id=record.get("subscription") or None,
        msisdn=record.get("msisdn") or None,
        visited_plmn=record.get("visited_plmn") or None,
        called_number=record.get("called_number") or None,
        position=rejection.position,
        extra={k: v for k, v in rejection.raw.items() if k not in FIXABLE and k != "record_id"},
        refusal=refusal,
    )


def rerate_rejection(
    session: Session, tenant: Tenant, rejection_id: str, *, window: UsageWindow | None = None
) -> tuple[UsageRejection, RecordOutcome]:
    """Rate a rejected record again, exactly once: rated (fixed), a duplicate of one accepted meanwhile, or refused.

    Refused again, the rejection stays open with the new reason.
    """
    rejection = _open(session, rejection_id)
    as_received, received_at = dict(rejection.raw), rejection.received_at
    result = ingest_usage(session, tenant, [_input_of(rejection)], source=rejection.source, window=window)
    outcome = result.records[0]
    now = utcnow()
    table = cast(Table, UsageRejection.__table__)
    if outcome.outcome == "rejected":
        # Refused again: the reason is the new one, the record as received and when stay what they were.
        session.execute(
            update(table).where(table.c.id == rejection.id).values(raw=as_received, received_at=received_at)
        )
    elif outcome.outcome == "rated":
        # ingest_usage resolved it as a duplicate of the record it rated: that record is this one, re-rated.
        session.execute(
            update(table)
            .where(table.c.id == rejection.id, table.c.usage_record_id == outcome.usage_record)
            .values(status="fixed", resolved_at=now)
        )
        record_event(
            session,
            "usage.rerated",
            rejection.id,
            {"record_id": rejection.record_id, "usage_record": outcome.usage_record},
        )
    elif outcome.outcome == "duplicate":
        # Accepted meanwhile (or by a re-rate racing this one): resolved, never charged twice.
        session.execute(
            update(table)
            .where(table.c.id == rejection.id, table.c.status == "open")
            .values(status="duplicate", resolved_at=now, usage_record_id=outcome.usage_record)
        )
    session.flush()
    session.refresh(rejection)
    return rejection, outcome


def get_usage_record(session: Session, usage_record_id: str) -> UsageRecord:
    """A usage record of the session's tenant, or 404 `usage_record_not_found`."""
    return get_or_raise(session, UsageRecord, usage_record_id, UsageRecordNotFound, "usage record")


def _overage_price(terms: Any, zone: str, service: str) -> Decimal | None:
    """The offer's price beyond the allowances; None when it prices none (an MMS the offer leaves out)."""
    if terms is None:
        return None
    try:
        return engine.usage_price(terms, zone, service)
    except ratecards.PricingError:
        return None


def _card_line(
    session: Session, version_id: str | None, service: str, prefix: str | None, band: str | None, *, roaming: str | None
) -> Any:
    """The stored version and the line that priced a record (published versions are compiled once per process):
    for a roaming record, its zone's roaming line of that prefix when there is one, else the home line."""
    version = session.get(RateCardVersion, version_id) if version_id else None
    if version is None:
        return None, None
    compiled = compile_stored_version(session, version)
    key = "" if prefix in (None, ratecards.DEFAULT_PREFIX) else prefix
    for where in (roaming, None) if roaming else (None,):
        by_band = compiled.index.get((service, where), {}).get(key, {})
        found = by_band.get(band) or by_band.get(None)
        if found is not None:
            return version, found.line
    return version, None


def _priced_view(
    session: Session,
    record: UsageRecord,
    *,
    version_id: str | None,
    prefix: str | None,
    quantity: int,
    connect_fee_applied: bool,
    exact: Decimal | None,
    amount: Decimal | None,
) -> dict[str, Any] | None:
    roaming = record.zone if record.zone in ratecards.ROAMING_ZONES else None
    version, line = _card_line(session, version_id, record.service, prefix, record.time_band, roaming=roaming)
    if version is None:
        return None
    card = session.get(RateCard, version.rate_card_id)
    return {
        "rate_card": version.rate_card_id,
        "rate_card_name": card.name if card else None,
        "version": version.id,
        "version_number": version.number,
        "prefix": prefix,
        "destination_zone": line.zone if line else None,
        "roaming_rate": line.roaming if line else None,
        "time_band": record.time_band,
        "first_increment": line.first_increment if line else None,
        "next_increment": line.next_increment if line else None,
        "quantity": quantity,
        "connect_fee": line.connect_fee if line else None,
        "connect_fee_applied": bool(connect_fee_applied and line and not line.zero_rated and line.connect_fee > 0),
        "unit_price": line.price if line else None,
        "zero_rated": line.zero_rated if line else False,
        "premium_cap": line.premium_cap if line else None,
        "rounding": f"{card.rounding_mode} to {card.precision} decimals, once per record" if card else None,
        "amount_exact": exact,
        "amount": amount,
    }


def explain_usage_record(session: Session, record: UsageRecord) -> dict[str, Any]:
    """What a rated record is and why it costs what it costs, from what was stored when it was rated."""
    service = Service(record.service)
    offer = session.get(Offer, record.offer_id) if record.offer_id else None
    allowance: dict[str, Any] | None = None
    if record.allowance_before is not None:
        allowance = {
            "before": record.allowance_before,
            "used": record.allowance_used,
            "after": record.allowance_before - record.allowance_used,
        }
    offer_view: dict[str, Any] | None = None
    if offer is not None:
        timeline = line_terms(session, [record.subscription_id]).get(record.subscription_id)
        terms = timeline.at(record.started_at) if timeline else None
        included = sum(
            a.quantity or 0 for a in (terms.allowances if terms else ()) if a.service == service and a.zone == HOME
        )
        offer_view = {
            "id": offer.id,
            "code": offer.code,
            "name": offer.name,
            "currency": offer.currency,
            "allowance": included,
            "allowance_per_period": included // price_unit(service) if included else 0,
            "overage_price": _overage_price(terms, record.zone, service.value),
            "priced_unit": PRICED_UNITS[service],
        }
    parts = [(str(p[0]), int(p[1])) for p in (record.bucket_parts or [])]
    buckets = {
        b.id: b for b in session.scalars(select(BalanceBucket).where(BalanceBucket.id.in_([p[0] for p in parts])))
    }
    consumed = [
        {
            "bucket": bucket_id,
            "origin": buckets[bucket_id].origin if bucket_id in buckets else None,
            "zone": buckets[bucket_id].zone if bucket_id in buckets else None,
            "quantity": quantity,
        }
        for bucket_id, quantity in parts
    ]
    retail = _priced_view(
        session,
        record,
        version_id=record.rate_card_version_id,
        prefix=record.rate_prefix,
        quantity=record.overage_quantity,
        connect_fee_applied=record.allowance_used == 0 and record.overage_quantity > 0,
        exact=record.amount_exact,
        amount=record.amount,
    )
    if retail is not None:
        retail["billed_quantity"] = record.billed_quantity
    wholesale = _priced_view(
        session,
        record,
        version_id=record.wholesale_rate_version_id,
        prefix=record.wholesale_prefix,
        quantity=record.quantity,
        connect_fee_applied=record.quantity > 0,
        exact=record.wholesale_exact,
        amount=record.wholesale_amount,
    )
    if wholesale is not None:
        wholesale["time_band"] = None
    if record.overage_quantity == 0:
        priced_by = "allowance"
    elif record.rate_card_version_id:
        priced_by = "rate_card"
    else:
        priced_by = "usage_price"
    invoice = session.get(Invoice, record.invoice_id) if record.invoice_id else None
    unit = price_unit(service)
    return {
        "id": record.id,
        "record_id": record.record_id,
        "subscription": record.subscription_id,
        "msisdn": record.msisdn,
        "service": service.value,
        "started_at": record.started_at,
        "quantity": record.quantity,
        "unit": UNITS[service],
        "period": record.period,
        "zone": record.zone,
        "visited_plmn": record.visited_plmn,
        "called_number": record.called_number,
        "rating_group": record.rating_group,
        "offer": offer_view,
        "offer_version": record.offer_version_id,
        "allowance": allowance,
        "buckets": consumed,
        "throttled": record.throttled,
        "overage_quantity": record.overage_quantity,
        "overage_priced_units": Decimal(record.overage_quantity) / unit,
        "overage_unit_price": record.overage_unit_price,
        "priced_by": priced_by,
        "retail": retail,
        "amount_exact": record.amount_exact,
        "amount": record.amount,
        "rounding": retail["rounding"] if retail else "half-up to 6 decimals, once per record",
        "wholesale": wholesale,
        "wholesale_note": None
        if wholesale is not None
        else "No wholesale price: the host network has no wholesale rate card, or no rate on it for this record.",
        "margin": record.amount - record.wholesale_amount if record.wholesale_amount is not None else None,
        "rerated_count": record.rerated_count,
        "source": record.source,
        "position": record.position,
        "received_at": record.received_at,
        "invoice": invoice.id if invoice else None,
    }
