"""Errors of charging and billing."""

from __future__ import annotations

from mvne.infra.errors import Conflict, InvalidInput, NotFound


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


class UsageRejectionNotFound(NotFound):
    code = "usage_rejection_not_found"


class UsageRecordNotFound(NotFound):
    code = "usage_record_not_found"


class UsageRejectionResolved(Conflict):
    """The rejection was already re-rated, found a duplicate, or discarded: nothing is left to do with it."""

    code = "usage_rejection_resolved"


class UsageStillRejected(InvalidInput):
    """Re-rated, the record is still refused; the rejection stays open with the new reason."""

    code = "usage_still_rejected"
