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


class SandboxOnly(InvalidInput):
    """Test scenarios are for sandbox (onboarding) tenants; a live tenant's lines are real ones."""

    code = "sandbox_only"


class LaunchIncomplete(Conflict):
    """The onboarding checklist has steps left; `errors` names each and what to do."""

    code = "launch_incomplete"


class TenantAlreadyLive(Conflict):
    code = "tenant_already_live"


class UnknownNetworkAgreement(InvalidInput):
    code = "unknown_network_agreement"


class NetworkAgreementUnavailable(InvalidInput):
    """An agreement of another country, or one retired: the tenant cannot choose it."""

    code = "network_agreement_unavailable"
