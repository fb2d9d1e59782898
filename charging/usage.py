"""Usage ingestion and rating: from the API or from host-network files, each record counted once.

A record is inserted first with ON CONFLICT DO NOTHING on (tenant, record id), so a duplicate,
even one racing in another worker, is seen before anything is rated. Rating then locks the line's
allowance balance for the period, consumes it, and prices the rest as overage.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, event, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.catalog.terms import LineTerms, TermsTimeline, line_terms
from mvne.charging import engine, ratecards, usage_writer
from mvne.charging.balances import money_balance, pay_usage
from mvne.charging.models import SOURCE_LENGTH, BalanceBucket, UsageRecord, UsageRejection
from mvne.charging.ratecard_models import RateCard, RateCardVersion
from mvne.charging.ratecard_service import compiled_card
from mvne.charging.ratecards import PricingError
from mvne.charging.rating import Service
from mvne.charging.zones import HOME, valid_plmn, zone_of
from mvne.infra.db import for_each_key, insert_from_arrays, one_of, pg_array, utcnow
from mvne.infra.ids import new_id, new_ids
from mvne.infra.metrics import USAGE_RECORDS
from mvne.provisioning.models import NetworkAgreement, Subscription
from mvne.tenants.models import Tenant, TenantSettings
from mvne.tenants.service import record_event, record_events

log = logging.getLogger("mvne.usage")
T = TypeVar("T")

RATEABLE_STATUSES = ("active", "suspended")
# How the records of a usage file name their source: "file:" and the file's storage key.
FILE_SOURCE = "file:"
# Keys (lines, record ids) looked up per statement: a batch's worth, as one array parameter on PostgreSQL.
KEYS_PER_STATEMENT = 5000


@dataclass(frozen=True)
class UsageInput:
    record_id: str
    # A Service value; anything else is rejected as `unknown_service`.
    service: str
    started_at: dt.datetime
    quantity: int
    subscription_id: str | None = None
    msisdn: str | None = None
    # Where the record was: its index in a batch or its line in a file (kept on a rejection).
    position: int | None = None
    # Fields of the sender's record beyond the ones above (a file's IMSI, called number...), kept on a rejection.
    extra: dict[str, Any] | None = None
    # Refused before it got here (a file line that could not be read): the code and detail; `extra` holds the
    # fields as they were read, and the other fields are placeholders.
    refusal: tuple[str, str] | None = None
    # Where the record was (the visited network's MCC-MNC; none at home), what it reached, its rating group.
    visited_plmn: str | None = None
    called_number: str | None = None
    rating_group: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as plain JSON values, as a rejection keeps it."""
        if self.refusal is not None:
            line = {"subscription": self.subscription_id, "msisdn": self.msisdn}
            return {**(self.extra or {}), "record_id": self.record_id, **{k: v for k, v in line.items() if v}}
        details = {"visited_plmn": self.visited_plmn, "called_number": self.called_number}
        if self.rating_group is not None:
            details["rating_group"] = str(self.rating_group)
        return {
            **(self.extra or {}),
            **{k: v for k, v in details.items() if v is not None},
            "record_id": self.record_id,
            "subscription": self.subscription_id,
            "msisdn": self.msisdn,
            "service": str(self.service),
            "started_at": self.started_at.isoformat(),
            "quantity": self.quantity,
        }


# Reason codes of rejected usage, stable: senders and the tenant's tools branch on them (docs/usage.md).
REASON_CODES = (
    "unknown_line",
    "line_not_active_then",
    "invalid_quantity",
    "unknown_service",
    "in_the_future",
    "too_old",
    "malformed",
    "no_rate",
)
# A record larger than these is a fault of the sender, not usage: 10 TB of data, a day of voice, 100 messages.
QUANTITY_LIMITS = {Service.DATA: 10 * 10**12, Service.VOICE: 24 * 3600, Service.SMS: 100, Service.MMS: 100}
# A data session or a call may be of zero length (rated at nothing); a message is at least one.
QUANTITY_MINIMUMS = {Service.DATA: 0, Service.VOICE: 0, Service.SMS: 1, Service.MMS: 1}
# A record's service (a `Service` or its name) to the member and to the plain name: a dict look-up, where
# calling `Service(...)` or `str(...)` on a member costs microseconds a record.
_SERVICE: dict[str, Service] = {s.value: s for s in Service}
_SERVICE_NAME: dict[str, str] = {s.value: s.value for s in Service}
UNITS = {Service.DATA: "bytes", Service.VOICE: "seconds", Service.SMS: "messages", Service.MMS: "messages"}


@dataclass(frozen=True)
class UsageWindow:
    """When usage may have happened: not after now plus a clock-skew tolerance, not before the retention."""

    clock_skew: dt.timedelta = dt.timedelta(minutes=15)
    retention: dt.timedelta = dt.timedelta(days=180)

    @classmethod
    def of(cls, clock_skew_s: int, retention_days: int) -> UsageWindow:
        return cls(dt.timedelta(seconds=clock_skew_s), dt.timedelta(days=retention_days))

    def refusal(self, started_at: dt.datetime, now: dt.datetime) -> tuple[str, str] | None:
        """Why a record's time is refused (code, reason), or None when it is acceptable."""
        if started_at > now + self.clock_skew:
            return (
                "in_the_future",
                f"The record starts at {started_at.isoformat()}, later than now ({now.isoformat(timespec='seconds')}) "
                f"by more than the {int(self.clock_skew.total_seconds())} s clock-skew tolerance.",
            )
        if started_at < now - self.retention:
            return (
                "too_old",
                f"The record starts at {started_at.isoformat()}, older than the {self.retention.days}-day "
                "retention window for usage.",
            )
        return None


@dataclass
class RecordOutcome:
    """What became of one record of a batch: rated, duplicate (already accepted) or rejected."""

    index: int
    record_id: str
    outcome: str
    usage_record: str | None = None
    rejection: str | None = None
    code: str | None = None
    reason: str | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    # Records of a usage file found rated already from the same line of the same file: an earlier run of its
    # segment committed them before its worker stopped. Rated once, and counted as such (not as duplicates).
    resumed: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    records: list[RecordOutcome] = field(default_factory=list)
    # Records of lines another transaction held (`defer_busy_lines`): not looked at, to send again.
    deferred: list[UsageInput] = field(default_factory=list)


def period_of(moment: dt.datetime, timezone: str) -> str:
    """The billing period (YYYY-MM) a moment falls in, in the tenant's time zone."""
    return moment.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y-%m")


class _PeriodOf:
    """`period_of` for many moments of one time zone: each period's bounds kept once met, the last one tried
    first (a batch straddling a month's end goes back and forth between two)."""

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.label, self.start, self.end = (
            "",
            dt.datetime.max.replace(tzinfo=dt.UTC),
            dt.datetime.min.replace(tzinfo=dt.UTC),
        )
        self.known: list[tuple[dt.datetime, dt.datetime, str]] = []

    def __call__(self, moment: dt.datetime) -> str:
        if self.start <= moment < self.end:
            return self.label
        for start, end, label in self.known:
            if start <= moment < end:
                self.label, self.start, self.end = label, start, end
                return label
        self.label = period_of(moment, self.timezone)
        self.start, self.end = period_window(self.label, self.timezone)
        self.known.append((self.start, self.end, self.label))
        return self.label


def _quantity_refusal(service: Service, quantity: int) -> tuple[str, str] | None:
    low, high = QUANTITY_MINIMUMS[service], QUANTITY_LIMITS[service]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        return ("invalid_quantity", f"The quantity must be a whole number of {UNITS[service]}.")
    if not low <= quantity <= high:
        return (
            "invalid_quantity",
            f"{quantity} {UNITS[service]} of {service.value} in one record: expected {low} to {high}.",
        )
    return None


class LineRef(NamedTuple):
    """What rating needs of a line: read as four columns, not as a whole mapped object."""

    id: str
    msisdn: str | None
    activated_at: dt.datetime | None
    terminated_at: dt.datetime | None


def _line_refusal(record: UsageInput, sub: LineRef | None) -> tuple[str, str] | None:
    if sub is None:
        named = f"line {record.subscription_id}" if record.subscription_id else f"MSISDN {record.msisdn}"
        return ("unknown_line", f"No {named} among the tenant's lines.")
    if sub.activated_at is None:
        return (
            "line_not_active_then",
            f"The line was not active at {record.started_at.isoformat()} (never activated).",
        )
    ended = sub.terminated_at is not None and record.started_at >= sub.terminated_at
    if record.started_at < sub.activated_at or ended:
        until = f" to {sub.terminated_at.isoformat()}" if sub.terminated_at else ""
        return (
            "line_not_active_then",
            f"The line was not active at {record.started_at.isoformat()} "
            f"(active from {sub.activated_at.isoformat()}{until}).",
        )
    return None


def refusal_of(
    record: UsageInput,
    sub: LineRef | None,
    window: UsageWindow,
    now: dt.datetime,
    *,
    details: RecordDetails | None = None,
) -> tuple[str, str] | None:
    """Why a record cannot be rated (reason code, detail), or None when it can (`details`: read already)."""
    if record.refusal is not None:
        return record.refusal
    if record.service not in _SERVICE:
        return ("unknown_service", f"Service {str(record.service)[:40]!r} is not one of data, voice, sms, mms.")
    return (
        _quantity_refusal(_SERVICE[record.service], record.quantity)
        or _details_refusal(details or record_details(record))
        or window.refusal(record.started_at, now)
        or _line_refusal(record, sub)
    )


class _Candidate(NamedTuple):
    """A record to rate: its index in the batch, its line, its period and the details read from it."""

    at: int
    record: UsageInput
    line: LineRef
    period: str
    details: RecordDetails


@dataclass
class _Sorted:
    """A batch sorted before rating: what to rate, what is refused, what repeats an earlier record."""

    outcomes: list[RecordOutcome | None]
    candidates: list[_Candidate] = field(default_factory=list)
    refused: list[tuple[int, UsageInput, str, str]] = field(default_factory=list)
    first_of: dict[str, int] = field(default_factory=dict)
    repeated: list[int] = field(default_factory=list)
    resumed: int = 0


LineOf = Callable[[UsageInput], LineRef | None]


def _lines_of(session: Session, tenant: Tenant, records: list[UsageInput]) -> LineOf:
    """The tenant's lines the records name (by line id, else by MSISDN), read in one statement; a record's line."""
    by_id = {r.subscription_id for r in records if r.subscription_id}
    by_msisdn = {r.msisdn for r in records if r.msisdn and not r.subscription_id}
    subs = {
        row.id: LineRef(*row)
        for row in session.execute(
            select(Subscription.id, Subscription.msisdn, Subscription.activated_at, Subscription.terminated_at).where(
                Subscription.tenant_id == tenant.id,
                one_of(session, Subscription.id, by_id) | one_of(session, Subscription.msisdn, by_msisdn),
            )
        )
    }
    subs_by_msisdn = {s.msisdn: s for s in subs.values() if s.msisdn}

    def line_of(record: UsageInput) -> LineRef | None:
        if record.subscription_id:
            return subs.get(record.subscription_id)
        return subs_by_msisdn.get(record.msisdn or "")

    return line_of


def _sort_batch(
    session: Session, tenant: Tenant, records: list[UsageInput], window: UsageWindow, line_of: LineOf, *, source: str
) -> _Sorted:
    batch = _Sorted(outcomes=[None] * len(records))
    from_file = source.startswith(FILE_SOURCE)
    existing = _accepted_origins(session, tenant.id, [r.record_id for r in records])
    now = utcnow()
    period_at = _PeriodOf(tenant.timezone)
    for index, record in enumerate(records):
        if record.record_id in existing:
            usage_id, origin = existing[record.record_id]
            resumed = (
                from_file
                and origin == (source[:SOURCE_LENGTH], record.position)
                and record.record_id not in batch.first_of
            )
            if resumed:
                batch.first_of[record.record_id] = index
                batch.resumed += 1
            outcome = "rated" if resumed else "duplicate"
            batch.outcomes[index] = RecordOutcome(index, record.record_id, outcome, usage_id)
            continue
        sub = line_of(record)
        details = record_details(record)
        refusal = refusal_of(record, sub, window, now, details=details)
        if refusal is not None:
            batch.refused.append((index, record, *refusal))
        elif record.record_id in batch.first_of:
            batch.repeated.append(index)
        elif sub is not None:
            batch.first_of[record.record_id] = index
            period = period_at(record.started_at)
            batch.candidates.append(_Candidate(index, record, sub, period, details))
    return batch


def ingest_usage(
    session: Session,
    tenant: Tenant,
    records: list[UsageInput],
    *,
    source: str,
    window: UsageWindow | None = None,
    lock_lines: Literal["skip_busy", "wait"] | None = None,
) -> IngestResult:
    """Store and rate a batch for the session's tenant; every record ends rated, duplicate or rejected (and kept).

    The batch is rated in memory under row locks on the allowance balances it touches, taken in a
    fixed order; duplicates are looked for after the locks are held, so two batches carrying the same
    record (they touch the same balance) cannot both count it. Records, then rejections, are written
    in multi-row inserts in the caller's transaction: a batch that fails writes neither.

    With `lock_lines` (on PostgreSQL) the batch first locks its lines. "skip_busy" skips those another
    transaction holds: their records are left out, returned in `deferred` for the caller to send again
    in a later batch (the outcomes' indexes then count the records rated now). Workers sharing a file
    then rate disjoint lines instead of waiting on each other's bucket locks. "wait" waits for them
    (lines are locked in id order, so two such batches cannot deadlock).
    """
    result = IngestResult()
    line_of = _lines_of(session, tenant, records)
    if lock_lines is not None and session.get_bind().dialect.name == "postgresql":
        records, result.deferred = _lock_lines(session, records, line_of, skip_busy=lock_lines == "skip_busy")
    batch = _sort_batch(session, tenant, records, window or UsageWindow(), line_of, source=source)
    rated = _rate(session, tenant, batch, source) if batch.candidates else {}
    result.accepted = len(rated)
    result.resumed = batch.resumed
    for index in batch.repeated:
        first = batch.outcomes[batch.first_of[records[index].record_id]]
        batch.outcomes[index] = RecordOutcome(
            index, records[index].record_id, "duplicate", usage_record=first.usage_record if first else None
        )
    kept = _keep_rejections(session, tenant.id, source, batch.refused)
    for index, record, code, detail in batch.refused:
        rejection_id = kept[record.record_id]
        batch.outcomes[index] = RecordOutcome(index, record.record_id, "rejected", None, rejection_id, code, detail)
        result.rejected.append(
            {"index": index, "record_id": record.record_id, "code": code, "reason": detail, "rejection": rejection_id}
        )
    if rated:
        _resolve_rejections(session, tenant.id, rated)
    if batch.refused:
        reasons: dict[str, int] = defaultdict(int)
        for _, _, code, _ in batch.refused:
            reasons[code] += 1
        # One event per batch, not per record: a file of a million bad records is one piece of news.
        record_event(
            session,
            "usage.rejected",
            kept[batch.refused[0][1].record_id],
            {"count": len(batch.refused), "source": source[:SOURCE_LENGTH], "reasons": dict(reasons)},
            tenant_id=tenant.id,
        )
    result.records = [o for o in batch.outcomes if o is not None]
    result.duplicates = sum(1 for o in result.records if o.outcome == "duplicate")
    session.flush()
    return _counted(result)


def _lock_lines(
    session: Session, records: list[UsageInput], line_of: LineOf, *, skip_busy: bool
) -> tuple[list[UsageInput], list[UsageInput]]:
    """Lock the records' lines (FOR NO KEY UPDATE, SKIP LOCKED when `skip_busy`): (records to rate now, records of
    busy lines)."""
    named = {line.id for line in map(line_of, records) if line is not None}
    if not named:
        return records, []
    free = set(
        session.scalars(
            select(Subscription.id)
            .where(one_of(session, Subscription.id, named))
            .order_by(Subscription.id)
            .with_for_update(skip_locked=skip_busy, key_share=True)
        )
    )
    now: list[UsageInput] = []
    later: list[UsageInput] = []
    for record in records:
        line = line_of(record)
        (later if line is not None and line.id not in free else now).append(record)
    return now, later


def _rate(session: Session, tenant: Tenant, batch: _Sorted, source: str) -> dict[str, str]:
    """Rate the batch's candidates under the bucket locks and insert them; their usage record ids by record id.

    Rows go in with ON CONFLICT DO NOTHING on (tenant, record id): a record a racing batch accepted first
    is not inserted, and then the batch is rated again without it, so no bucket counts it twice.
    """
    sub_ids = sorted({c.line.id for c in batch.candidates})
    terms = line_terms(session, sub_ids)
    context = rating_context(session, tenant, terms)
    ensure_plan_buckets(session, tenant, {(c.line.id, c.period) for c in batch.candidates}, terms)
    starts = [c.record.started_at for c in batch.candidates]
    line_services = {(c.line.id, _SERVICE_NAME[c.record.service]) for c in batch.candidates}
    buckets = locked_buckets(session, tenant.id, line_services, min(starts), max(starts))
    # A record draws only on buckets of its service: each line's are looked at service by service.
    by_line: dict[tuple[str, str], list[engine.Bucket]] = defaultdict(list)
    for bucket in buckets:
        by_line[(bucket.subscription_id, bucket.service)].append(bucket)
    known: dict[str, str] = {}
    while True:
        attempt = _rate_candidates(tenant, batch, terms, context, by_line=by_line, known=known, source=source)
        inserted = write_usage_rows(session, attempt.rows)
        if len(inserted) == len(attempt.rows):
            break
        lost = sorted({row[_RECORD_ID_AT] for row in attempt.rows} - inserted)
        session.execute(
            delete(UsageRecord).where(
                UsageRecord.tenant_id == tenant.id,
                one_of(session, UsageRecord.id, [attempt.rated[r] for r in inserted]),
            )
        )
        known.update(_accepted_ids(session, tenant.id, lost))
        for bucket in buckets:
            bucket.reset()
    batch.refused.extend(attempt.refused)
    paid = pay_usage(session, tenant.id, ((row[0], row[_LINE_AT], row[_AMOUNT_AT]) for row in attempt.rows))
    if source != ONLINE_SOURCE:
        _note_use_for_online_charging(session, buckets, attempt.rows, paid)
    for index, outcome in attempt.outcomes.items():
        batch.outcomes[index] = outcome
    settle_buckets(session, tenant.id, buckets)
    by_id = {bucket.id: bucket for bucket in buckets}
    record_events(
        session,
        "balance.fair_use_reached",
        [
            (
                bucket.id,
                {
                    "subscription": bucket.subscription_id,
                    "bucket": bucket.id,
                    "service": bucket.service,
                    "zone": bucket.zone,
                    "fair_use": bucket.fair_use,
                    "used": bucket.used,
                },
            )
            for bucket in (by_id[bucket_id] for bucket_id in attempt.fair_use_reached)
        ],
        tenant_id=tenant.id,
    )
    return attempt.rated


# Settled online usage: online charging counted it already when it reserved it.
ONLINE_SOURCE = "online"
# Where a transaction keeps the use it rated from records, for online charging to count once it commits.
OFFLINE_USE = "mvne.offline_use"


def _note_use_for_online_charging(
    session: Session, buckets: list[engine.Bucket], rows: list[tuple[Any, ...]], paid: set[str]
) -> None:
    """What records took from each line (bucket units, spending, prepaid money), kept with the transaction: once it
    commits, the online charging accounts of these lines, if any are held, count it too
    (`mvne.charging.online.service`), so a session open on a line is not granted what a record already used."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for bucket in buckets:
        used, eu_used = bucket.used - bucket.loaded[0], bucket.eu_used - bucket.loaded[1]
        if used:
            found[bucket.subscription_id][f"u:{bucket.id}"] += used
        if eu_used:
            found[bucket.subscription_id][f"e:{bucket.id}"] += eu_used
    for row in rows:
        micro = int(row[_AMOUNT_AT] * 1_000_000)
        if micro:
            found[row[_LINE_AT]]["sp"] += micro
            if row[0] in paid:
                found[row[_LINE_AT]]["m"] -= micro
    if found:
        session.info.setdefault(OFFLINE_USE, []).extend((line, dict(counters)) for line, counters in found.items())


@dataclass
class _Attempt:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rated: dict[str, str] = field(default_factory=dict)
    outcomes: dict[int, RecordOutcome] = field(default_factory=dict)
    refused: list[tuple[int, UsageInput, str, str]] = field(default_factory=list)
    fair_use_reached: list[str] = field(default_factory=list)


def _rate_candidates(
    tenant: Tenant,
    batch: _Sorted,
    terms: dict[str, TermsTimeline],
    context: RatingContext,
    *,
    by_line: dict[tuple[str, str], list[engine.Bucket]],
    known: dict[str, str],
    source: str,
) -> _Attempt:
    """The hot loop: no database, no ORM object; rows ready for one multi-row insert."""
    attempt = _Attempt()
    received = utcnow()
    from_file = source.startswith(FILE_SOURCE)
    source = source[:SOURCE_LENGTH]
    usage_ids = iter(new_ids("usg", len(batch.candidates)))
    for index, record, sub, period, details in batch.candidates:
        if record.record_id in known:
            attempt.outcomes[index] = RecordOutcome(index, record.record_id, "duplicate", known[record.record_id])
            continue
        line = terms[sub.id].at(record.started_at) or terms[sub.id].terms[-1]
        usage_event = engine.Usage(
            service=_SERVICE_NAME[record.service],
            started_at=record.started_at,
            quantity=record.quantity,
            zone=zone_of(details.visited_plmn, context.home_mcc),
            called_number=details.called_number,
        )
        try:
            rating = engine.rate(usage_event, line, by_line[(sub.id, usage_event.service)], context.pricing)
        except PricingError as exc:
            attempt.refused.append((index, record, "no_rate", exc.detail[:480]))
            continue
        attempt.fair_use_reached.extend(rating.fair_use_reached)
        usage_id = next(usage_ids)
        attempt.rated[record.record_id] = usage_id
        attempt.outcomes[index] = RecordOutcome(index, record.record_id, "rated", usage_record=usage_id)
        attempt.rows.append(
            (
                usage_id,
                tenant.id,
                record.record_id,
                sub.id,
                sub.msisdn or "",
                usage_event.service,
                record.started_at,
                record.quantity,
                period,
                source,
                record.position if from_file else None,
                received,
                details.visited_plmn,
                details.called_number,
                details.rating_group,
                0,
                *_rated_values(usage_event, line, rating),
            )
        )
    return attempt


# The columns of a rated row, in the order `_rate_candidates` builds them: the record's, then rating's.
_RECORD_COLUMNS = (
    "id",
    "tenant_id",
    "record_id",
    "subscription_id",
    "msisdn",
    "service",
    "started_at",
    "quantity",
    "period",
    "source",
    "position",
    "received_at",
    "visited_plmn",
    "called_number",
    "rating_group",
    "rerated_count",
)
RATED_COLUMNS = (
    "zone",
    "offer_id",
    "offer_version_id",
    "allowance_used",
    "overage_quantity",
    "allowance_before",
    "bucket_parts",
    "throttled",
    "amount",
    "amount_exact",
    "overage_unit_price",
    "billed_quantity",
    "rate_card_version_id",
    "rate_prefix",
    "time_band",
    "wholesale_amount",
    "wholesale_exact",
    "wholesale_rate_version_id",
    "wholesale_prefix",
)
USAGE_ROW_COLUMNS = _RECORD_COLUMNS + RATED_COLUMNS
_RECORD_ID_AT = USAGE_ROW_COLUMNS.index("record_id")
_LINE_AT = USAGE_ROW_COLUMNS.index("subscription_id")
_AMOUNT_AT = USAGE_ROW_COLUMNS.index("amount")


def _rated_values(usage_event: engine.Usage, line: LineTerms, rating: engine.Rating) -> tuple[Any, ...]:
    retail, wholesale = rating.retail, rating.wholesale
    return (
        usage_event.zone,
        line.offer_id,
        line.offer_version_id,
        rating.allowance_used,
        rating.overage_quantity,
        rating.allowance_before,
        [list(part) for part in rating.parts] if rating.parts else None,
        rating.throttled,
        retail.amount,
        retail.exact,
        retail.unit_price,
        retail.billed_quantity,
        retail.version_id,
        retail.prefix,
        retail.time_band,
        wholesale.amount if wholesale else None,
        wholesale.exact if wholesale else None,
        wholesale.version_id if wholesale else None,
        wholesale.prefix if wholesale else None,
    )


def rated_columns(usage_event: engine.Usage, line: LineTerms, rating: engine.Rating) -> dict[str, Any]:
    """The columns of a usage record that rating decides (written on insert, and again by a re-rating)."""
    return dict(zip(RATED_COLUMNS, _rated_values(usage_event, line, rating), strict=True))


def write_usage_rows(session: Session, rows: list[tuple[Any, ...]]) -> set[str]:
    """Insert rated usage rows (tuples in `USAGE_ROW_COLUMNS` order); the record ids inserted (the others were
    accepted before).

    On PostgreSQL by COPY (`mvne.charging.usage_writer`); elsewhere one cached INSERT ... ON CONFLICT DO
    NOTHING RETURNING in multi-row statements, records that consumed no bucket in a second call without
    `bucket_parts` (SQL NULL rather than JSON null).
    """
    if session.get_bind().dialect.name == "postgresql":
        return usage_writer.write_usage_rows(session, rows, USAGE_ROW_COLUMNS)
    inserted: set[str] = set()
    table = cast(Table, UsageRecord.__table__)
    stmt = (
        sqlite_insert(table)
        .on_conflict_do_nothing(index_elements=["tenant_id", "record_id"])
        .returning(table.c.record_id)
    )
    mapped = [dict(zip(USAGE_ROW_COLUMNS, row, strict=True)) for row in rows]
    with_parts = [row for row in mapped if row["bucket_parts"] is not None]
    without = [{k: v for k, v in row.items() if k != "bucket_parts"} for row in mapped if row["bucket_parts"] is None]
    for group in (with_parts, without):
        if group:
            inserted.update(session.scalars(stmt, group))
    return inserted


class RecordDetails(NamedTuple):
    """What a record says beyond line, service, time and quantity: where it was and what it reached."""

    visited_plmn: str | None
    called_number: str | None
    rating_group: int | None


def record_details(record: UsageInput) -> RecordDetails:
    """The record's visited network, called number and rating group: its own fields, else those a file read."""
    extra = record.extra or {}
    group = record.rating_group if record.rating_group is not None else extra.get("rating_group")
    if isinstance(group, str) and group.isdigit() and group.isascii():
        group = int(group)
    return RecordDetails(
        visited_plmn=(record.visited_plmn or extra.get("visited_plmn") or None),
        called_number=(record.called_number or extra.get("called_number") or None),
        rating_group=group if isinstance(group, int) and not isinstance(group, bool) else None,
    )


def _details_refusal(details: RecordDetails) -> tuple[str, str] | None:
    if details.visited_plmn is not None and (
        not isinstance(details.visited_plmn, str) or not valid_plmn(details.visited_plmn)
    ):
        return ("malformed", f"visited_plmn {str(details.visited_plmn)[:20]!r} is not an MCC-MNC such as 20801.")
    if details.called_number is not None:
        try:
            ratecards.called_digits(str(details.called_number))
        except PricingError as exc:
            return ("malformed", f"called_number: {exc.detail[:200]}")
    return None


@dataclass(frozen=True)
class RatingContext:
    """What a batch is rated with besides each line's terms: the host network's MCC and the compiled cards."""

    home_mcc: str | None
    pricing: engine.Pricing


def rating_context(session: Session, tenant: Tenant, terms: Mapping[str, TermsTimeline]) -> RatingContext:
    """The host network and the rate cards a batch needs, loaded once (published versions compile once per process)."""
    host = session.scalar(select(TenantSettings.host_network_agreement_id).where(TenantSettings.tenant_id == tenant.id))
    home_mcc = session.scalar(select(NetworkAgreement.mcc).where(NetworkAgreement.id == host)) if host else None
    cards = session.execute(
        select(RateCard.id, RateCard.purpose, RateCard.network_agreement_id)
        .where(RateCard.tenant_id == tenant.id)
        .order_by(RateCard.created_at.desc(), RateCard.id.desc())
    ).all()
    published = set(
        session.scalars(
            select(RateCardVersion.rate_card_id).where(
                RateCardVersion.tenant_id == tenant.id, RateCardVersion.status == "published"
            )
        )
    )
    default_retail = next(
        (c.id for c in cards if c.purpose == "retail" and c.network_agreement_id is None and c.id in published), None
    )
    wholesale = (
        next(
            (c.id for c in cards if c.purpose == "wholesale" and c.network_agreement_id == host and c.id in published),
            None,
        )
        if host
        else None
    )
    wanted = {t.rate_card_id for timeline in terms.values() for t in timeline.terms if t.rate_card_id}
    wanted |= {card_id for card_id in (default_retail, wholesale) if card_id}
    existing = {c.id for c in cards}
    compiled = {card_id: compiled_card(session, card_id) for card_id in sorted(wanted & existing)}
    return RatingContext(home_mcc, engine.Pricing(compiled, default_retail, wholesale))


# Buckets -------------------------------------------------------------------------------------------------


def _previous_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def _plan_allowances(line: LineTerms) -> dict[tuple[str, str], dict[str, Any]]:
    """A line's allowances by (service, zone), several of one kind added up (any unlimited one makes it unlimited)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for term in line.allowances:
        seen = found.get((term.service, term.zone))
        if seen is None:
            found[(term.service, term.zone)] = {
                "granted": term.quantity,
                "fair_use": term.fair_use,
                "roam_like_at_home": term.roam_like_at_home,
                "eu_fair_use": term.eu_fair_use,
                "rollover_cap": term.rollover_cap,
                "priority": term.priority,
            }
            continue
        seen["granted"] = None if seen["granted"] is None or term.quantity is None else seen["granted"] + term.quantity
        seen["fair_use"] = seen["fair_use"] if term.fair_use is None else (seen["fair_use"] or 0) + term.fair_use
        seen["roam_like_at_home"] = seen["roam_like_at_home"] or term.roam_like_at_home
        seen["rollover_cap"] += term.rollover_cap
        seen["priority"] = min(seen["priority"], term.priority)
    return found


def plan_terms(timeline: TermsTimeline, start: dt.datetime) -> LineTerms:
    """The terms that set a period's plan buckets: those in force when it starts (or the line's first)."""
    return timeline.at(start) or timeline.terms[0]


class _StoredPlanBuckets:
    """The (line, period) pairs whose plan buckets this process knows are stored, with any rollover they carry.

    Plan buckets are never deleted, so once seen committed a pair needs no look-up again: a worker's later
    batches of the same lines skip it. A transaction's pairs count only once it commits (a rolled-back
    transaction's buckets are gone). A pair whose rollover came to nothing is not kept: a later batch
    works it out again, as it always did.
    """

    LIMIT = 2_000_000
    PENDING = "mvne.plan_buckets_stored"

    def __init__(self) -> None:
        self.known: set[tuple[str, str]] = set()

    def missing(self, line_periods: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        return {pair for pair in line_periods if pair not in self.known}

    def stored(self, session: Session, pairs: Collection[tuple[str, str]]) -> None:
        session.info.setdefault(self.PENDING, set()).update(pairs)

    def committed(self, session: Session) -> None:
        pairs = session.info.pop(self.PENDING, None)
        if pairs:
            if len(self.known) + len(pairs) > self.LIMIT:
                self.known.clear()
            self.known.update(pairs)

    def rolled_back(self, session: Session, *_: Any) -> None:
        session.info.pop(self.PENDING, None)


_STORED_PLAN_BUCKETS = _StoredPlanBuckets()
event.listen(Session, "after_commit", _STORED_PLAN_BUCKETS.committed)
event.listen(Session, "after_rollback", _STORED_PLAN_BUCKETS.rolled_back)
event.listen(Session, "after_soft_rollback", _STORED_PLAN_BUCKETS.rolled_back)


def ensure_plan_buckets(
    session: Session, tenant: Tenant, line_periods: set[tuple[str, str]], terms: Mapping[str, TermsTimeline]
) -> None:
    """Create the plan (and rollover) buckets of each (line, period) that lacks them; made once whatever races."""
    asked = line_periods
    line_periods = _STORED_PLAN_BUCKETS.missing(asked)
    if not line_periods:
        return
    sub_ids = sorted({sub_id for sub_id, _ in line_periods if sub_id in terms})
    periods = sorted({period for _, period in line_periods} | {_previous_period(p) for _, p in line_periods})
    existing: dict[tuple[str, str], tuple[str, int | None, int]] = {}
    for sub_chunk in _chunks(sub_ids, KEYS_PER_STATEMENT):
        plan_buckets = select(
            BalanceBucket.subscription_id,
            BalanceBucket.origin_key,
            BalanceBucket.granted,
            BalanceBucket.used,
        ).where(
            BalanceBucket.tenant_id == tenant.id,
            BalanceBucket.origin.in_(("plan", "rollover")),
            BalanceBucket.period.in_(periods),
        )
        rows = session.execute(for_each_key(session, BalanceBucket.subscription_id, sub_chunk, plan_buckets))
        for sub_id, key, granted, used in rows:
            existing[(sub_id, key)] = (key, granted, used)
    now = utcnow()
    values: list[dict[str, Any]] = []
    windows = {period: period_window(period, tenant.timezone) for period in {p for _, p in line_periods}}
    untouched = _UntouchedPeriods(session, tenant.timezone, terms)
    allowances_of: dict[str, list[tuple[tuple[str, str], dict[str, Any]]]] = {}
    settled: list[tuple[str, str]] = []
    for sub_id, period in sorted(line_periods):
        if sub_id not in terms:
            continue
        settled.append((sub_id, period))
        start, end = windows[period]
        line = plan_terms(terms[sub_id], start)
        allowances = allowances_of.get(line.offer_version_id)
        if allowances is None:
            allowances = allowances_of[line.offer_version_id] = sorted(_plan_allowances(line).items())
        for (service, zone), allowance in allowances:
            common = {
                "tenant_id": tenant.id,
                "subscription_id": sub_id,
                "service": service,
                "zone": zone,
                "offer_version_id": line.offer_version_id,
                "period": period,
                "used": 0,
                "eu_used": 0,
                "valid_from": start,
                "valid_to": end,
                "notified_percent": 0,
                "created_at": now,
            }
            key = f"plan:{period}:{service}:{zone}"
            if (sub_id, key) not in existing:
                values.append(
                    {
                        **common,
                        "origin": "plan",
                        "origin_key": key,
                        "granted": allowance["granted"],
                        "fair_use": allowance["fair_use"],
                        "roam_like_at_home": allowance["roam_like_at_home"],
                        "eu_fair_use": allowance["eu_fair_use"],
                        "priority": allowance["priority"],
                    }
                )
            rollover_key = f"rollover:{period}:{service}:{zone}"
            if allowance["rollover_cap"] and (sub_id, rollover_key) not in existing:
                previous = existing.get((sub_id, f"plan:{_previous_period(period)}:{service}:{zone}"))
                left = previous[1] - previous[2] if previous is not None and previous[1] is not None else 0
                # No bucket of the last period: the line used nothing of it, unless this batch makes it now.
                if previous is None and (sub_id, _previous_period(period)) not in asked:
                    left = untouched.left(sub_id, period, service, zone)
                carried = min(allowance["rollover_cap"], max(left, 0))
                if carried > 0:
                    # Consumed before the period's own allowance: it would be lost at the same time.
                    values.append(
                        {
                            **common,
                            "origin": "rollover",
                            "origin_key": rollover_key,
                            "granted": carried,
                            "fair_use": None,
                            "roam_like_at_home": allowance["roam_like_at_home"],
                            "eu_fair_use": allowance["eu_fair_use"],
                            "priority": allowance["priority"] - 1,
                        }
                    )
                elif settled and settled[-1] == (sub_id, period):
                    settled.pop()  # nothing to carry yet: worked out again by the next batch
    _insert_buckets(session, values)
    _STORED_PLAN_BUCKETS.stored(session, settled)


class _UntouchedPeriods:
    """What a line left of a period in which it used nothing (so no plan bucket was made): the whole allowance of
    the terms then in force, when the line was active before that period ended; nothing otherwise."""

    def __init__(self, session: Session, timezone: str, terms: Mapping[str, TermsTimeline]) -> None:
        self.session, self.timezone, self.terms = session, timezone, terms
        self.activated: dict[str, dt.datetime | None] | None = None

    def left(self, sub_id: str, period: str, service: str, zone: str) -> int:
        if self.activated is None:  # read once, and only when some line has a period without buckets
            rows = self.session.execute(
                select(Subscription.id, Subscription.activated_at).where(
                    one_of(self.session, Subscription.id, sorted(self.terms))
                )
            )
            self.activated = {row.id: row.activated_at for row in rows}
        since = self.activated.get(sub_id)
        start, end = period_window(_previous_period(period), self.timezone)
        if since is None or since >= end:
            return 0
        allowance = _plan_allowances(plan_terms(self.terms[sub_id], max(start, since))).get((service, zone))
        return allowance["granted"] if allowance is not None and allowance["granted"] is not None else 0


def _insert_buckets(session: Session, values: list[dict[str, Any]]) -> None:
    """New buckets (their ids given here, in one batch), each made once however many batches race to make it
    (unique per line and origin key)."""
    if not values:
        return
    for value, bucket_id in zip(values, new_ids("bkt", len(values)), strict=True):
        value["id"] = bucket_id
    table = cast(Table, BalanceBucket.__table__)
    if session.get_bind().dialect.name == "postgresql":
        insert_from_arrays(session, table, values, conflict_columns=("subscription_id", "origin_key"))
        return
    # One cached statement, executemany: the driver sends multi-row INSERTs.
    stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=["subscription_id", "origin_key"])
    for chunk in _chunks(values, 1000):
        session.execute(stmt, chunk)


_BUCKET_COLUMNS = (
    BalanceBucket.id,
    BalanceBucket.subscription_id,
    BalanceBucket.service,
    BalanceBucket.zone,
    BalanceBucket.origin,
    BalanceBucket.granted,
    BalanceBucket.used,
    BalanceBucket.valid_from,
    BalanceBucket.valid_to,
    BalanceBucket.fair_use,
    BalanceBucket.roam_like_at_home,
    BalanceBucket.eu_fair_use,
    BalanceBucket.eu_used,
    BalanceBucket.priority,
    BalanceBucket.notified_percent,
    BalanceBucket.period,
)


def locked_buckets(
    session: Session,
    tenant_id: str,
    line_services: Collection[tuple[str, str]],
    earliest: dt.datetime,
    latest: dt.datetime,
) -> list[engine.Bucket]:
    """The buckets of each (line, service) valid at some time in [earliest, latest], locked in (line, service, id)
    order: one order for every caller, so no deadlock. Only the services a batch uses: a line's others stay free."""
    found: list[engine.Bucket] = []
    for key_chunk in _chunks(sorted(set(line_services)), KEYS_PER_STATEMENT):
        valid = (
            select(*_BUCKET_COLUMNS)
            .where(
                BalanceBucket.tenant_id == tenant_id,
                BalanceBucket.valid_from <= latest,
                BalanceBucket.valid_to > earliest,
            )
            .order_by(BalanceBucket.id)
            .with_for_update()
        )
        keyed = (BalanceBucket.subscription_id, BalanceBucket.service)
        rows = session.execute(for_each_key(session, keyed, key_chunk, valid))
        found.extend(engine.Bucket(*row) for row in rows)
    return found


def settle_buckets(session: Session, tenant_id: str, buckets: list[engine.Bucket]) -> None:
    """Threshold events of the buckets that crossed 50, 80 or 100 %, and every changed bucket written back.

    One UPDATE ... FROM (VALUES ...) per chunk sets used, EU use and the notified threshold together, so
    each threshold is sent once: the batch that crosses it holds the bucket's lock and records it.
    """
    crossings: list[tuple[str, dict[str, Any]]] = []
    for bucket in buckets:
        crossed = bucket.threshold_crossed()
        if crossed is None:
            continue
        bucket.notified_percent = crossed
        crossings.append(
            (
                bucket.id,
                {
                    "subscription": bucket.subscription_id,
                    "bucket": bucket.id,
                    "service": bucket.service,
                    "zone": bucket.zone,
                    "percent": crossed,
                    "granted": bucket.granted,
                    "used": bucket.used,
                },
            )
        )
    record_events(session, "balance.threshold_reached", crossings, tenant_id=tenant_id)
    write_buckets(session, [b for b in buckets if b.changed])


def write_buckets(session: Session, buckets: list[engine.Bucket]) -> None:
    """Write used, EU use and notified threshold of buckets: on PostgreSQL one UPDATE from four arrays,
    elsewhere one UPDATE ... FROM (VALUES ...) per 500."""
    if not buckets:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE balance_buckets SET used = v.used, eu_used = v.eu_used, notified_percent = v.notified "
                "FROM unnest(CAST(:ids AS VARCHAR(40)[]), CAST(:used AS BIGINT[]), CAST(:eu_used AS BIGINT[]), "
                "CAST(:notified AS INTEGER[])) AS v(id, used, eu_used, notified) WHERE balance_buckets.id = v.id"
            ),
            {
                "ids": pg_array([b.id for b in buckets]),
                "used": pg_array([b.used for b in buckets]),
                "eu_used": pg_array([b.eu_used for b in buckets]),
                "notified": pg_array([b.notified_percent for b in buckets]),
            },
        )
    else:
        for chunk in _chunks(buckets, 500):
            params: dict[str, Any] = {}
            values = []
            for n, bucket in enumerate(chunk):
                values.append(
                    f"(CAST(:i{n} AS VARCHAR(40)), CAST(:u{n} AS BIGINT), CAST(:e{n} AS BIGINT), "
                    f"CAST(:p{n} AS INTEGER))"
                )
                params.update(
                    {
                        f"i{n}": bucket.id,
                        f"u{n}": bucket.used,
                        f"e{n}": bucket.eu_used,
                        f"p{n}": bucket.notified_percent,
                    }
                )
            session.execute(
                text(
                    "UPDATE balance_buckets SET used = v.column2, eu_used = v.column3, notified_percent = v.column4 "  # noqa: S608
                    f"FROM (VALUES {', '.join(values)}) AS v WHERE balance_buckets.id = v.column1"
                ),
                params,
            )
    for bucket in buckets:
        bucket.loaded = (bucket.used, bucket.eu_used, bucket.notified_percent)


def _accepted_ids(session: Session, tenant_id: str, record_ids: list[str]) -> dict[str, str]:
    """The usage record ids of the sender's record ids the tenant has already accepted."""
    origins = _accepted_origins(session, tenant_id, record_ids)
    return {record_id: usage_id for record_id, (usage_id, _) in origins.items()}


def _accepted_origins(
    session: Session, tenant_id: str, record_ids: list[str]
) -> dict[str, tuple[str, tuple[str, int | None]]]:
    """The sender's record ids the tenant has already accepted: each one's usage record id and where it came from
    (source, and position in a file)."""
    found: dict[str, tuple[str, tuple[str, int | None]]] = {}
    for id_chunk in _chunks(sorted(set(record_ids)), KEYS_PER_STATEMENT):
        accepted = select(UsageRecord.record_id, UsageRecord.id, UsageRecord.source, UsageRecord.position).where(
            UsageRecord.tenant_id == tenant_id
        )
        rows = session.execute(for_each_key(session, UsageRecord.record_id, id_chunk, accepted))
        found.update((record_id, (usage_id, (source, position))) for record_id, usage_id, source, position in rows)
    return found


def _keep_rejections(
    session: Session, tenant_id: str, source: str, refused: list[tuple[int, UsageInput, str, str]]
) -> dict[str, str]:
    """Write the rejections (one open rejection per record id: sent again, it is updated); their ids by record id."""
    latest: dict[str, dict[str, Any]] = {}
    received = utcnow()
    for _, record, code, detail in refused:
        latest[record.record_id] = {
            "id": new_id("urj"),
            "tenant_id": tenant_id,
            "record_id": record.record_id,
            "source": source[:SOURCE_LENGTH],
            "position": record.position,
            "raw": record.as_json(),
            "fixes": {},
            "reason_code": code,
            "reason_detail": detail[:500],
            "status": "open",
            "received_at": received,
        }
    ids: dict[str, str] = {}
    if not latest:
        return ids
    table = cast(Table, UsageRejection.__table__)
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for chunk in _chunks(list(latest.values()), 500):
        stmt = upsert(table).values(chunk)
        returning = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "record_id"],
            index_where=text("status = 'open'"),
            set_={
                name: stmt.excluded[name]
                for name in ("source", "position", "raw", "reason_code", "reason_detail", "received_at")
            },
        ).returning(table.c.record_id, table.c.id)
        ids.update((record_id, rejection_id) for record_id, rejection_id in session.execute(returning))
    return ids


def _resolve_rejections(session: Session, tenant_id: str, rated: dict[str, str]) -> None:
    """Open rejections of records now accepted are resolved as duplicates of the accepted record."""
    open_ids: list[tuple[str, str]] = []
    for id_chunk in _chunks(sorted(rated), KEYS_PER_STATEMENT):
        still_open = select(UsageRejection.id, UsageRejection.record_id).where(
            UsageRejection.tenant_id == tenant_id, UsageRejection.status == "open"
        )
        open_ids.extend(
            (row[0], row[1])
            for row in session.execute(for_each_key(session, UsageRejection.record_id, id_chunk, still_open))
        )
    if not open_ids:
        return
    table = cast(Table, UsageRejection.__table__)
    session.connection().execute(
        table.update()
        .where(table.c.id == bindparam("rejection_id"), table.c.status == "open")
        .values(status="duplicate", resolved_at=utcnow(), usage_record_id=bindparam("usage_id")),
        [{"rejection_id": rid, "usage_id": rated[record_id]} for rid, record_id in open_ids],
    )


def _counted(result: IngestResult) -> IngestResult:
    USAGE_RECORDS.labels("accepted").inc(result.accepted)
    USAGE_RECORDS.labels("duplicate").inc(result.duplicates)
    USAGE_RECORDS.labels("rejected").inc(len(result.rejected))
    return result


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def period_window(period: str, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a billing period (YYYY-MM, in the tenant's time zone) starts and ends."""
    tz = zoneinfo.ZoneInfo(timezone)
    year, month = int(period[:4]), int(period[5:7])
    following = (year + month // 12, month % 12 + 1)
    start = dt.datetime(year, month, 1, tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime(following[0], following[1], 1, tzinfo=tz).astimezone(dt.UTC)
    return start, end


@dataclass(frozen=True)
class ServiceUsage:
    service: str
    unit: str
    allowance: int
    quantity: int
    allowance_used: int
    overage_quantity: int
    overage_amount: Decimal
    records: int


def usage_summary(session: Session, subscription: Subscription, period: str) -> list[ServiceUsage]:
    """What a line used in a period, per service: allowance, use, overage and its price so far."""
    tenant = session.get(Tenant, subscription.tenant_id)
    assert tenant is not None
    timeline = line_terms(session, [subscription.id]).get(subscription.id)
    included: dict[str, int] = defaultdict(int)
    if timeline is not None and timeline.terms:
        line = plan_terms(timeline, period_window(period, tenant.timezone)[0])
        for term in line.allowances:
            if term.zone == HOME:
                included[term.service] += term.quantity or 0
    rows = session.execute(
        select(
            UsageRecord.service,
            UsageRecord.quantity,
            UsageRecord.allowance_used,
            UsageRecord.overage_quantity,
            UsageRecord.amount,
        ).where(UsageRecord.subscription_id == subscription.id, UsageRecord.period == period)
    )
    totals: dict[str, list[Any]] = {s.value: [0, 0, 0, Decimal(0), 0] for s in Service}
    for service, quantity, used, overage, amount in rows:
        bucket = totals[service]
        bucket[0] += quantity
        bucket[1] += used
        bucket[2] += overage
        bucket[3] += amount
        bucket[4] += 1
    return [
        ServiceUsage(
            service=s.value,
            unit=UNITS[s],
            allowance=included[s.value],
            quantity=totals[s.value][0],
            allowance_used=totals[s.value][1],
            overage_quantity=totals[s.value][2],
            overage_amount=totals[s.value][3],
            records=totals[s.value][4],
        )
        for s in Service
    ]


def balances(
    session: Session, tenant: Tenant, subscription: Subscription, now: dt.datetime | None = None
) -> dict[str, Any]:
    """A line's buckets valid now, in the order they are consumed; the current period's plan buckets made if missing."""
    now = now or utcnow()
    period = period_of(now, tenant.timezone)
    ensure_plan_buckets(session, tenant, {(subscription.id, period)}, line_terms(session, [subscription.id]))
    rows = session.scalars(
        select(BalanceBucket)
        .where(
            BalanceBucket.subscription_id == subscription.id,
            BalanceBucket.valid_from <= now,
            BalanceBucket.valid_to > now,
        )
        .order_by(BalanceBucket.priority, BalanceBucket.valid_to, BalanceBucket.id)
    )
    money = money_balance(session, subscription.id)
    return {
        "subscription": subscription.id,
        "period": period,
        "buckets": [bucket_view(b) for b in rows],
        "money": {"amount": money.amount, "currency": money.currency} if money else None,
    }


def bucket_view(bucket: BalanceBucket) -> dict[str, Any]:
    """A bucket as the balances endpoints show it: what is left, and how much of it is used in percent."""
    unlimited = bucket.granted is None
    percent = None
    if bucket.granted:
        percent = (Decimal(bucket.used) * 100 / bucket.granted).quantize(Decimal("0.01"))
    elif bucket.granted == 0:
        percent = Decimal(100) if bucket.used else Decimal(0)
    return {
        "id": bucket.id,
        "service": bucket.service,
        "zone": bucket.zone,
        "origin": bucket.origin,
        "period": bucket.period,
        "granted": bucket.granted,
        "used": bucket.used,
        "remaining": None if unlimited else max((bucket.granted or 0) - bucket.used, 0),
        "unlimited": unlimited,
        "fair_use": bucket.fair_use,
        "roam_like_at_home": bucket.roam_like_at_home,
        "eu_fair_use": bucket.eu_fair_use,
        "eu_used": bucket.eu_used,
        "percent_used": percent,
        "priority": bucket.priority,
        "valid_from": bucket.valid_from,
        "valid_to": bucket.valid_to,
    }
