"""Errors of provisioning."""

from __future__ import annotations

from mvne.infra.errors import Conflict, InvalidInput, NotFound


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class NumberRangeExhausted(Conflict):
    code = "number_range_exhausted"


class CountryNotSupported(InvalidInput):
    code = "country_not_supported"


class UnsupportedSimType(InvalidInput):
    code = "unsupported_sim_type"
