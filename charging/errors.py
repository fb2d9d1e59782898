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
