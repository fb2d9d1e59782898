"""Staff roles and the scopes each one grants: the permission matrix, in one place.

A staff user in a console session acts with the scopes of its role, checked by the same `@require(scope)`
as an API client's token. The tenant scopes are declared here, once; the platform's token server grants these.
"""

from __future__ import annotations

OWNER = "owner"
ADMIN = "admin"
CATALOG_MANAGER = "catalog_manager"
SUPPORT = "support"
FINANCE = "finance"
READ_ONLY = "read_only"
# Most powerful first: the order lists and documents show them in.
ROLE_NAMES = (OWNER, ADMIN, CATALOG_MANAGER, SUPPORT, FINANCE, READ_ONLY)

# Every tenant scope: what a tenant's back end may be granted (the platform's token server issues these), and
# what a role may hold.
TENANT_SCOPES = (
    "offers:read",
    "offers:write",
    "rates:read",
    "rates:write",
    "customers:read",
    "customers:write",
    "subscriptions:read",
    "subscriptions:write",
    "usage:read",
    "usage:write",
    "billing:read",
    "billing:write",
    "invoices:read",
    "events:read",
    "audit:read",
    "webhooks:read",
    "webhooks:write",
    "api_clients:read",
    "api_clients:write",
    "tenant:read",
    "tenant:write",
    "staff:read",
    "staff:write",
    "carrier_billing:charge",
)
ALL_SCOPES = frozenset(TENANT_SCOPES)
# What every staff user may do with its own session and account (who am I, sign out, two-factor setup).
SELF_SCOPE = "tenant:read"

ROLES: dict[str, frozenset[str]] = {
    OWNER: ALL_SCOPES,
    # Everything an owner does, but granting or taking away the owner role (the staff service refuses it).
    ADMIN: ALL_SCOPES,
    CATALOG_MANAGER: frozenset(
        {"offers:read", "offers:write", "rates:read", "rates:write", "tenant:read", "events:read"}
    ),
    SUPPORT: frozenset(
        {
            "customers:read",
            "customers:write",
            "subscriptions:read",
            "subscriptions:write",
            "invoices:read",
            "billing:read",
            "events:read",
            "tenant:read",
            "usage:read",
        }
    ),
    FINANCE: frozenset(
        {
            "billing:read",
            "billing:write",
            "invoices:read",
            "customers:read",
            "rates:read",
            "audit:read",
            "events:read",
            "tenant:read",
            "usage:read",
        }
    ),
    # Every read but the audit log and the API clients (who changed what, and the back ends' credentials).
    READ_ONLY: frozenset(s for s in ALL_SCOPES if s.endswith(":read") and s not in {"audit:read", "api_clients:read"}),
}

DESCRIPTIONS = {
    OWNER: "Everything, including granting and taking away the owner role. A tenant keeps at least one owner.",
    ADMIN: "Everything but the owner role: may not grant it, take it away, or invite owners.",
    CATALOG_MANAGER: "Offers and rate cards: read, create and publish them.",
    SUPPORT: "Subscriber accounts and their lines, read and changed; invoices and billing read.",
    FINANCE: "Billing runs, invoices, subscriber accounts and rate cards (read) and the audit log.",
    READ_ONLY: "Reads everything but the audit log and the API clients.",
}


def scopes_of(role: str) -> frozenset[str]:
    """The scopes a role grants; none for a role that does not exist (a row from a later version)."""
    return ROLES.get(role, frozenset())
