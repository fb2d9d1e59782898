"""Rate cards in the database: cards, dated versions, lines imported whole or not at all, publishing, quotes.

Services take a tenant-scoped session. A version's lines are checked in full before anything is written
(one bad line rejects the import with a report of every bad line), then written with one multi-row insert.
Published versions never change; they are compiled once per process (`compiled_card`) for pricing.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, cast

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.orm import Session

from mvne.charging import ratecards
from mvne.charging.errors import (
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
from mvne.infra.db import get_or_raise, pg_array, utcnow
from mvne.infra.ids import new_id
from mvne.provisioning.models import NetworkAgreement
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

DRAFT = "draft"
PUBLISHED = "published"
CSV_HEADER_LINE = 1
COMPILED_CACHE_SIZE = 64


# Cards -----------------------------------------------------------------------------------------------------


def create_rate_card(
    session: Session,
    tenant: Tenant,
    *,
    name: str,
    network_agreement_id: str | None,
    rounding_mode: str,
    precision: int,
    purpose: str = "retail",
) -> RateCard:
    """A card in the tenant's currency, for one host network of its country or (NULL) for any."""
    if rounding_mode not in ratecards.ROUNDING_MODES:
        raise InvalidRateCard(
            f"Unknown rounding mode {rounding_mode!r}.",
            errors={"rounding_mode": [f"One of {', '.join(ratecards.ROUNDING_MODES)}."]},
        )
    if purpose not in ("retail", "wholesale"):
        raise InvalidRateCard(f"Unknown purpose {purpose!r}.", errors={"purpose": ["retail or wholesale."]})
    if purpose == "wholesale" and network_agreement_id is None:
        raise InvalidRateCard(
            "A wholesale card prices one host network's charges: give its network_agreement_id.",
            errors={"network_agreement_id": ["Required for a wholesale card."]},
        )
    if not 0 <= precision <= ratecards.MAX_PRECISION:
        raise InvalidRateCard("Precision is 0 to 6 decimals.", errors={"precision": ["From 0 to 6."]})
    if network_agreement_id is not None:
        agreement = session.get(NetworkAgreement, network_agreement_id)
        if agreement is None or agreement.country != tenant.country:
            raise InvalidRateCard(
                f"No network agreement {network_agreement_id} for {tenant.country}: see GET /v1/network-agreements.",
                errors={"network_agreement_id": ["Not a network agreement of the tenant's country."]},
            )
    card = RateCard(
        id=new_id("rcd"),
        name=name,
        network_agreement_id=network_agreement_id,
        purpose=purpose,
        currency=tenant.currency,
        rounding_mode=rounding_mode,
        precision=precision,
    )
    session.add(card)
    session.flush()
    record_event(
        session,
        "rate_card.created",
        card.id,
        {"name": name, "network_agreement": network_agreement_id, "purpose": purpose},
    )
    return card


def get_rate_card(session: Session, card_id: str, *, lock: bool = False) -> RateCard:
    card = session.get(RateCard, card_id, with_for_update=lock)
    if card is None:
        raise RateCardNotFound(f"No rate card {card_id}.")
    return card


def get_version(session: Session, card_id: str, version_id: str) -> RateCardVersion:
    get_rate_card(session, card_id)
    version = get_or_raise(session, RateCardVersion, version_id, RateCardVersionNotFound, "rate card version")
    if version.rate_card_id != card_id:
        raise RateCardVersionNotFound(f"No rate card version {version_id} on rate card {card_id}.")
    return version


def versions_of(session: Session, card_id: str) -> list[RateCardVersion]:
    return list(
        session.scalars(
            select(RateCardVersion).where(RateCardVersion.rate_card_id == card_id).order_by(RateCardVersion.number)
        )
    )


# Versions --------------------------------------------------------------------------------------------------


def _reject(report_errors: list[ratecards.LineError], total: int, what: str) -> RateCardRejected:
    shown = len(report_errors)
    more = f" (the first {shown} listed)" if total > shown else ""
    return RateCardRejected(
        f"{total} error(s) in the {what}{more}; nothing was written. Fix every listed line and send it again.",
        errors={"lines": [error.as_dict() for error in report_errors], "total": total},
    )


def _checked_bands(time_bands: list[dict[str, Any]]) -> tuple[list[ratecards.BandWindow], set[str]]:
    windows, errors = ratecards.check_time_bands(time_bands)
    if errors:
        raise RateCardRejected(
            f"{len(errors)} error(s) in the time bands (numbered from 1); nothing was written.",
            errors={"time_bands": [error.as_dict() for error in errors], "total": len(errors)},
        )
    return windows, {window.band for window in windows}


def _dates(
    tenant: Tenant, effective_from: dt.date, effective_to: dt.date | None
) -> tuple[dt.datetime, dt.datetime | None]:
    if effective_to is not None and effective_to <= effective_from:
        raise InvalidEffectiveDates(
            "effective_to is the first day the version no longer applies: it must come after effective_from.",
            errors={"effective_to": ["Must be after effective_from."]},
        )
    zone = ratecards.zone_info(tenant.timezone)
    start = ratecards.local_midnight(effective_from, zone)
    end = ratecards.local_midnight(effective_to, zone) if effective_to is not None else None
    return start, end


# A whole version's lines in one statement, each column bound as one array (PostgreSQL).
_INSERT_UNNEST = text(
    """
    INSERT INTO rate_card_lines (tenant_id, version_id, id, prefix, zone, service, connect_fee, price,
        first_increment, next_increment, time_band, zero_rated, premium, premium_cap, roaming)
    SELECT :tenant_id, :version_id, u.* FROM unnest(
        CAST(:id AS varchar[]), CAST(:prefix AS varchar[]), CAST(:zone AS varchar[]), CAST(:service AS varchar[]),
        CAST(:connect_fee AS numeric[]), CAST(:price AS numeric[]), CAST(:first_increment AS integer[]),
        CAST(:next_increment AS integer[]), CAST(:time_band AS varchar[]), CAST(:zero_rated AS boolean[]),
        CAST(:premium AS boolean[]), CAST(:premium_cap AS numeric[]), CAST(:roaming AS varchar[])
    ) AS u
    """
)


def _write_lines(session: Session, version: RateCardVersion, lines: list[ratecards.RateLine]) -> None:
    # In (service, roaming, prefix, band) order, so that the time-ordered line ids page through them in that order.
    ordered = sorted(lines, key=lambda line: (line.service, line.roaming or "", line.prefix, line.time_band or ""))
    columns: dict[str, list[Any]] = {
        "id": [new_id("rcl") for _ in ordered],
        "prefix": [line.prefix for line in ordered],
        "zone": [line.zone for line in ordered],
        "service": [line.service for line in ordered],
        "connect_fee": [line.connect_fee for line in ordered],
        "price": [line.price for line in ordered],
        "first_increment": [line.first_increment for line in ordered],
        "next_increment": [line.next_increment for line in ordered],
        "time_band": [line.time_band or "" for line in ordered],
        "zero_rated": [line.zero_rated for line in ordered],
        "premium": [line.premium for line in ordered],
        "premium_cap": [line.premium_cap for line in ordered],
        "roaming": [line.roaming or "" for line in ordered],
    }
    version.line_count = len(ordered)
    if not ordered:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One statement for the whole version, its columns as arrays: 50,000 lines in one round trip.
        # (COPY would be faster still, but PostgreSQL refuses COPY FROM into a table under row-level security.)
        arrays = {name: pg_array(values) for name, values in columns.items()}
        session.execute(_INSERT_UNNEST, {"tenant_id": version.tenant_id, "version_id": version.id, **arrays})
        return
    rows = [
        {
            "tenant_id": version.tenant_id,
            "version_id": version.id,
            **{name: values[i] for name, values in columns.items()},
        }
        for i in range(len(ordered))
    ]
    # Elsewhere one executemany, which SQLAlchemy sends as multi-row INSERTs (insertmanyvalues).
    session.execute(insert(cast(Table, RateCardLine.__table__)), rows)


def create_version(
    session: Session,
    tenant: Tenant,
    card_id: str,
    *,
    effective_from: dt.date,
    effective_to: dt.date | None,
    time_bands: list[dict[str, Any]],
    lines: list[Mapping[str, Any]],
) -> RateCardVersion:
    """A draft version with its time bands and lines (lines numbered from 1); all checked before any is written."""
    card = get_rate_card(session, card_id, lock=True)
    start, end = _dates(tenant, effective_from, effective_to)
    _, bands = _checked_bands(time_bands)
    report = ratecards.check_lines(enumerate(lines, start=1), bands, roaming_allowed=card.purpose != "retail")
    if report.error_count:
        raise _reject(report.errors, report.error_count, "lines (numbered from 1)")
    number = (
        session.scalar(select(func.max(RateCardVersion.number)).where(RateCardVersion.rate_card_id == card.id)) or 0
    ) + 1
    version = RateCardVersion(
        id=new_id("rcv"),
        rate_card_id=card.id,
        number=number,
        status=DRAFT,
        effective_from=effective_from,
        effective_to=effective_to,
        effective_from_at=start,
        effective_to_at=end,
        timezone=tenant.timezone,
        time_bands=time_bands,
        line_count=0,
    )
    session.add(version)
    session.flush()
    _write_lines(session, version, report.lines)
    record_event(
        session,
        "rate_card_version.created",
        version.id,
        {
            "rate_card": card.id,
            "number": number,
            "effective_from": effective_from.isoformat(),
            "lines": len(report.lines),
        },
    )
    return version


def csv_rows(stream: IO[bytes], report: ratecards.LineReport) -> Iterator[tuple[int, dict[str, str]]]:
    """The data lines of a CSV body (the header is line 1), read as they come; header faults go to `report`."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def text_lines() -> Iterator[str]:
        pending = ""
        while True:
            chunk = stream.read(64 * 1024)
            final = not chunk
            pending += decoder.decode(chunk, final=final)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line + "\n"
            if final:
                if pending:
                    yield pending
                return

    lines = text_lines()
    try:
        reader = csv.reader(lines, strict=True)
        header = next(reader, None)
        if header is None:
            report.add([ratecards.LineError(CSV_HEADER_LINE, "header", "missing_header", _HEADER_HINT)])
            return
        columns = [name.strip().lower() for name in header]
        unknown = [name for name in columns if name not in ratecards.LINE_FIELDS]
        missing = [name for name in ratecards.REQUIRED_LINE_FIELDS if name not in columns]
        twice = sorted({name for name in columns if columns.count(name) > 1})
        faults = [
            *(ratecards.LineError(CSV_HEADER_LINE, name, "unknown_column", _HEADER_HINT) for name in unknown),
            *(ratecards.LineError(CSV_HEADER_LINE, name, "missing_column", _HEADER_HINT) for name in missing),
            *(
                ratecards.LineError(CSV_HEADER_LINE, name, "duplicate_column", "Name each column once.")
                for name in twice
            ),
        ]
        if faults:
            report.add(faults)
            return
        for cells in reader:
            number = reader.line_num
            if not cells or all(not cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                report.add(
                    [
                        ratecards.LineError(
                            number,
                            "line",
                            "wrong_column_count",
                            f"{len(cells)} values for {len(columns)} columns.",
                        )
                    ]
                )
                continue
            yield number, dict(zip(columns, cells, strict=True))
    except UnicodeDecodeError:
        report.add([ratecards.LineError(0, "body", "invalid_encoding", "The CSV must be UTF-8 text.")])
    except csv.Error as exc:
        report.add([ratecards.LineError(0, "body", "invalid_csv", f"Not CSV as RFC 4180 writes it: {exc}.")])


_HEADER_HINT = (
    "The first line names the columns: prefix, zone, service, price, first_increment, next_increment, and optionally "
    "connect_fee, time_band, zero_rated, premium, premium_cap, roaming."
)


def import_csv(session: Session, card_id: str, version_id: str, stream: IO[bytes]) -> RateCardVersion:
    """Replace a draft version's lines with a CSV's, whole: one bad line and the version keeps its lines."""
    card = get_rate_card(session, card_id, lock=True)
    version = get_version(session, card_id, version_id)
    if version.status != DRAFT:
        raise RateCardVersionPublished(
            f"Version {version.number} is published and never changes: create a new version to change rates."
        )
    _, bands = _checked_bands(version.time_bands)
    report = ratecards.LineReport()
    ratecards.check_lines(csv_rows(stream, report), bands, report=report, roaming_allowed=card.purpose != "retail")
    if report.error_count:
        raise _reject(report.errors, report.error_count, "CSV (line 1 is the header)")
    session.execute(delete(RateCardLine).where(RateCardLine.version_id == version.id))
    _write_lines(session, version, report.lines)
    record_event(
        session, "rate_card_version.lines_imported", version.id, {"rate_card": card_id, "lines": version.line_count}
    )
    return version


def _overlap(first: RateCardVersion, second: RateCardVersion) -> bool:
    earlier, later = sorted((first, second), key=lambda v: v.effective_from_at)
    if earlier.effective_from_at == later.effective_from_at:
        return True
    # An open-ended version yields to the next one; a stated end must not reach into it.
    return earlier.effective_to_at is not None and earlier.effective_to_at > later.effective_from_at


def publish_version(session: Session, card_id: str, version_id: str) -> RateCardVersion:
    """Make a draft version apply from its date; refused when its dates overlap another published version's."""
    get_rate_card(session, card_id, lock=True)  # publishes of one card queue here, so two cannot both pass the check
    version = get_version(session, card_id, version_id)
    if version.status == PUBLISHED:
        return version
    if version.line_count == 0:
        raise RateCardVersionEmpty(f"Version {version.number} has no lines: add lines before publishing it.")
    for other in versions_of(session, card_id):
        if other.status == PUBLISHED and other.id != version.id and _overlap(version, other):
            until = other.effective_to.isoformat() if other.effective_to else "the next version"
            raise VersionDatesOverlap(
                f"Version {version.number} ({version.effective_from.isoformat()} to "
                f"{version.effective_to.isoformat() if version.effective_to else 'the next version'}) overlaps "
                f"published version {other.number} ({other.effective_from.isoformat()} to {until}): "
                "change this draft's dates (delete it and create it again).",
                errors={"effective_from": [f"Overlaps published version {other.number} ({other.id})."]},
            )
    version.status = PUBLISHED
    version.published_at = utcnow()
    session.flush()
    record_event(
        session,
        "rate_card_version.published",
        version.id,
        {"rate_card": card_id, "number": version.number, "effective_from": version.effective_from.isoformat()},
    )
    return version


def delete_version(session: Session, card_id: str, version_id: str) -> None:
    """Delete a draft version and its lines; a published one stays for the usage it rated."""
    get_rate_card(session, card_id, lock=True)
    version = get_version(session, card_id, version_id)
    if version.status != DRAFT:
        raise RateCardVersionPublished(f"Version {version.number} is published: it stays, for the usage it rated.")
    session.execute(delete(RateCardLine).where(RateCardLine.version_id == version.id))
    session.delete(version)
    session.flush()
    record_event(session, "rate_card_version.deleted", version.id, {"rate_card": card_id, "number": version.number})


# Pricing ---------------------------------------------------------------------------------------------------

_compiled: OrderedDict[str, ratecards.CompiledVersion] = OrderedDict()
_compiled_lock = threading.Lock()


def _rate_lines(session: Session, version_id: str) -> Iterable[ratecards.RateLine]:
    columns = (
        RateCardLine.prefix,
        RateCardLine.zone,
        RateCardLine.service,
        RateCardLine.connect_fee,
        RateCardLine.price,
        RateCardLine.first_increment,
        RateCardLine.next_increment,
        RateCardLine.time_band,
        RateCardLine.zero_rated,
        RateCardLine.premium,
        RateCardLine.premium_cap,
        RateCardLine.roaming,
    )
    rows = session.execute(select(*columns).where(RateCardLine.version_id == version_id))
    for prefix, zone, service, connect_fee, price, first, next_, band, zero_rated, premium, cap, roaming in rows:
        yield ratecards.RateLine(
            prefix=prefix,
            zone=zone,
            service=service,
            connect_fee=connect_fee,
            price=price,
            first_increment=first,
            next_increment=next_,
            time_band=band or None,
            zero_rated=zero_rated,
            premium=premium,
            premium_cap=cap,
            roaming=roaming or None,
        )


def compile_stored_version(session: Session, version: RateCardVersion) -> ratecards.CompiledVersion:
    """A version's prefix index; a published version's is built once per process and kept (it never changes)."""
    cacheable = version.status == PUBLISHED
    if cacheable:
        with _compiled_lock:
            found = _compiled.get(version.id)
            if found is not None:
                _compiled.move_to_end(version.id)
                return found
    windows, _ = ratecards.check_time_bands(version.time_bands)
    compiled = ratecards.compile_version(
        _rate_lines(session, version.id),
        windows,
        ratecards.zone_info(version.timezone),
        version_id=version.id,
        number=version.number,
        effective_from=version.effective_from_at,
        effective_to=version.effective_to_at,
    )
    if cacheable:
        with _compiled_lock:
            _compiled[version.id] = compiled
            while len(_compiled) > COMPILED_CACHE_SIZE:
                _compiled.popitem(last=False)
    return compiled


def compiled_card(session: Session, card_id: str) -> ratecards.CompiledCard:
    """The card's published versions, compiled (from the cache once built)."""
    card = get_rate_card(session, card_id)
    published = [v for v in versions_of(session, card_id) if v.status == PUBLISHED]
    return ratecards.CompiledCard(
        currency=card.currency,
        rounding_mode=card.rounding_mode,
        precision=card.precision,
        versions=[compile_stored_version(session, version) for version in published],
    )


def quote(
    session: Session,
    card_id: str,
    *,
    service: str,
    called: str | None,
    started_at: dt.datetime,
    quantity: int,
    roaming: str | None = None,
) -> ratecards.PricedEvent:
    """Price a hypothetical event with the card's published versions, and say how."""
    card = compiled_card(session, card_id)
    try:
        return ratecards.price(
            card, service=service, called=called, started_at=started_at, quantity=quantity, roaming=roaming
        )
    except ratecards.PricingError as exc:
        raise EventNotPriced(exc.detail, errors={"reason": [exc.code]}) from None
