"""Errors of charging and billing."""

from __future__ import annotations

from mvne.infra.errors import Conflict, DomainError, InvalidInput, NotFound


class BillingRunNotFound(NotFound):
    code = "billing_run_not_found"


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"


class InvalidPeriod(InvalidInput):
    code = "invalid_period"


class BillingRunInProgress(Conflict):
    code = "billing_run_in_progress"


class PeriodNotEnded(Conflict):
    code = "period_not_ended"


class RateCardNotFound(NotFound):
    code = "rate_card_not_found"


class RateCardVersionNotFound(NotFound):
    code = "rate_card_version_not_found"


class RateCardRejected(InvalidInput):
    """A version's lines or time bands are wrong; `errors["lines"]` lists each bad line, nothing is written."""

    code = "rate_card_rejected"


class InvalidRateCard(InvalidInput):
    code = "invalid_rate_card"


class InvalidEffectiveDates(InvalidInput):
    code = "invalid_effective_dates"


class RateCardVersionPublished(Conflict):
    code = "rate_card_version_published"


class RateCardVersionEmpty(Conflict):
    code = "rate_card_version_empty"


class VersionDatesOverlap(Conflict):
    code = "version_dates_overlap"


class EventNotPriced(InvalidInput):
    """The card cannot price the event: no version in effect, no line for the number, or a bad number."""

    code = "event_not_priced"


class CsvRequired(DomainError):
    code = "csv_required"
    status = 415
    title = "Unsupported Media Type"


class UsageRejectionNotFound(NotFound):
    code = "usage_rejection_not_found"


class UsageRecordNotFound(NotFound):
    code = "usage_record_not_found"


class UsageFileNotFound(NotFound):
    code = "usage_file_not_found"


class UsageRejectionResolved(Conflict):
    """The rejection was already re-rated, found a duplicate, or discarded: nothing is left to do with it."""

    code = "usage_rejection_resolved"


class UsageStillRejected(InvalidInput):
    """Re-rated, the record is still refused; the rejection stays open with the new reason."""

    code = "usage_still_rejected"


class ReratingRunNotFound(NotFound):
    code = "rerating_run_not_found"


class ReratingRunInProgress(Conflict):
    code = "rerating_run_in_progress"
