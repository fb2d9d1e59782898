"""Every route under /v1, called by tenant B on tenant A's objects: 404 or 403, never data, never a 500.

The walk reads the app's `url_map`, so a new route is covered the day it is added; a route whose path
parameter is not in the map below, or a new POST without a plausible body, fails the walk until the map
says what the parameter names.

The subscribers' routes (`/v1/me`) have a walk of their own: another subscriber, of tenant B or of tenant A
itself, calls each of them on tenant A's subscriber's lines and invoices, and every other route too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

from mvne.infra.ids import new_id
from mvne.infra.web.auth import KIND_CLIENT
from tests.isolation.conftest import (
    BILLING_SETTINGS,
    TwoTenants,
    World,
    brand_body,
    contains_any,
    legal_profile_body,
)
from tests.support.api import ApiCaller, Operator, customer, wait_for
from tests.support.staff import PASSWORD
from tests.support.subscribers import subscriber_api

# Path parameters that name an object a tenant owns: tenant B gets 404 for tenant A's.
TENANT_OBJECT_PARAMS = {
    "offer_id": "offer",
    "customer_id": "customer",
    "subscription_id": "subscription",
    "billing_run_id": "billing_run",
    "invoice_id": "invoice",
    "usage_record_id": "usage_record",
    "usage_rejection_id": "usage_rejection",
    "webhook_endpoint_id": "webhook_endpoint",
    "webhook_delivery_id": "webhook_delivery",
    "api_client_id": "api_client",
    "staff_user_id": "staff_user",
    "staff_invitation_id": "staff_invitation",
    "app_id": "app",
    "rate_card_id": "rate_card",
    "version_id": "rate_card_version",
    "offer_version_id": "offer_version",
    "promotion_id": "promotion",
    "rerating_run_id": "rerating_run",
    "purchase_id": "purchase",
    "merchant_id": "merchant",
    "carrier_charge_id": "carrier_charge",
    "batch_id": "voucher_batch",
}
# Path parameters of operator-only routes (they answer 403 to any tenant token).
OPERATOR_PARAMS = {
    "tenant_id": "tenant",
    "dead_letter_id": "dead_letter",
    "usage_file_id": "usage_file",
}
# Path parameters of public routes that hold no tenant data.
PUBLIC_PARAMS = {
    "name": "swagger-ui.css",
}
OPERATOR_PREFIXES = ("/v1/tenants", "/v1/dead-letters", "/v1/job-health", "/v1/operator/")
# Routes for subscribers only (a tenant's client gets 403), walked by other subscribers below.
SUBSCRIBER_PREFIX = "/v1/me"


def _for_subscribers(rule: Rule) -> bool:
    """A subscriber's own route: /v1/me and below it (not /v1/merchants, which only shares the letters)."""
    return rule.rule == SUBSCRIBER_PREFIX or rule.rule.startswith(f"{SUBSCRIBER_PREFIX}/")


PUBLIC_RULES = {"/v1/openapi.json", "/v1/docs", "/v1/docs/assets/<path:name>"}
PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")
# Id prefixes, to make up ids of objects that exist nowhere (B's answer must not tell them apart).
ID_PREFIXES = {
    "offer": "off",
    "customer": "cus",
    "subscription": "sub",
    "billing_run": "brn",
    "invoice": "inv",
    "usage_record": "usg",
    "usage_rejection": "urj",
    "webhook_endpoint": "whe",
    "webhook_delivery": "whd",
    "api_client": "cli",
    "staff_user": "stf",
    "staff_invitation": "sti",
    "app": "cli",
    "rate_card": "rcd",
    "rate_card_version": "rcv",
    "offer_version": "ofv",
    "promotion": "prm",
    "rerating_run": "rrr",
    "purchase": "pur",
    "merchant": "mer",
    "carrier_charge": "cch",
    "voucher_batch": "vbt",
}

# A list route and the kind of B's own object it must show (proof that it lists something).
LIST_OWN_OBJECT = {
    "/v1/offers": "offer",
    "/v1/customers": "customer",
    "/v1/subscriptions": "subscription",
    "/v1/invoices": "invoice",
    "/v1/billing-runs": "billing_run",
    "/v1/usage-records": "usage_record",
    "/v1/usage-rejections": "usage_rejection",
    "/v1/events": "customer",
    "/v1/webhook-endpoints": "webhook_endpoint",
    "/v1/api-clients": "api_client",
    "/v1/staff": "staff_user",
    "/v1/staff/invitations": "staff_invitation",
    "/v1/apps": "app",
    "/v1/rate-cards": "rate_card",
    "/v1/promotions": "promotion",
    "/v1/rerating-runs": "rerating_run",
    "/v1/merchants": "merchant",
    "/v1/carrier-charges": "carrier_charge",
}
# Public lists and the query that names tenant B's own (its catalogue shows only what B makes public).
PUBLIC_LIST_QUERIES: dict[str, Callable[[World, World], str]] = {"/v1/catalog": lambda a, b: f"?tenant={b.tenant.id}"}


@dataclass(frozen=True)
class Probe:
    """How tenant B calls a write route that has no path parameter, aiming at tenant A's objects."""

    body: Callable[[World, World], dict[str, Any]]
    status: int
    check: Callable[[Any, World, World], None] | None = None


def _offer_body(a: World, b: World) -> dict[str, Any]:
    # A's offer code: codes are unique per tenant, so B may use it too (a 409 would reveal A's catalogue).
    return {
        "code": a.offer_code,
        "name": "B's offer",
        "price": "9.99",
        "allowances": {"data_mb": 100, "voice_minutes": 10, "sms": 10},
        "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
    }


def _customer_body(a: World, b: World) -> dict[str, Any]:
    # A's customer's email: B must be able to use it, or a 409 would tell B that A has such a customer.
    return {
        "name": "Same email, other brand",
        "email": a.customer_email,
        "address": {"line1": "2 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
    }


def _usage_body(a: World, b: World) -> dict[str, Any]:
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    return {
        "records": [
            {"record_id": f"b-{secrets.token_hex(4)}", "subscription": a.subscription_id, "service": "sms",
             "started_at": started},
            {"record_id": f"b-{secrets.token_hex(4)}", "msisdn": a.msisdn, "service": "sms", "started_at": started},
        ]
    }  # fmt: skip


def _usage_rejected(response: Any, a: World, b: World) -> None:
    result = response.json
    assert result["accepted"] == 0, result
    assert [r["code"] for r in result["rejected"]] == ["unknown_line", "unknown_line"], result
    # B's own rejections (B sent A's ids): discarded, so B's list of open rejections shows only B's records.
    for rejected in result["rejected"]:
        discarded = b.tenant.api.post(f"/v1/usage-rejections/{rejected['rejection']}/discard")
        assert discarded.status_code == 200, discarded.json


def _run_sees_only_b(response: Any, a: World, b: World) -> None:
    run_id = response.json["id"]

    def finished() -> dict[str, Any] | None:
        run = b.tenant.api.get(f"/v1/billing-runs/{run_id}").json
        return run if run["status"] not in ("pending", "running") else None

    run = wait_for(finished, what=f"B's billing run {run_id}")
    # B has one billed customer, already invoiced for the period: A's customer must not be counted.
    assert (run["status"], run["customers_total"], run["invoices_created"]) == ("completed", 1, 0), run


def _api_client_is_b_only(response: Any, a: World, b: World) -> None:
    client_id = response.json["id"]
    assert response.json["tenant_id"] == b.tenant.id, response.json
    assert b.tenant.api.get(f"/v1/api-clients/{client_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/api-clients/{client_id}").status_code == 404


def _app_is_b_only(response: Any, a: World, b: World) -> None:
    app_id = response.json["id"]
    assert response.json["tenant_id"] == b.tenant.id, response.json
    assert b.tenant.api.get(f"/v1/apps/{app_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/apps/{app_id}").status_code == 404


def _endpoint_is_b_only(response: Any, a: World, b: World) -> None:
    endpoint_id = response.json["id"]
    assert b.tenant.api.get(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 404


def _legal_profile_is_b_only(response: Any, a: World, b: World) -> None:
    # B set its own profile under A's legal name; A's profile is untouched and B reads back its own.
    assert response.json["legal_name"] == f"Legal {a.tenant.slug}"
    assert a.tenant.api.get("/v1/tenant/legal-profile").json["legal_name"] == f"Legal {a.tenant.slug}"
    assert b.tenant.api.get("/v1/tenant/legal-profile").json["legal_name"] == f"Legal {a.tenant.slug}"
    restored = b.tenant.api.request("PUT", "/v1/tenant/legal-profile", legal_profile_body(b.tenant))
    assert restored.status_code == 200, restored.json


def _invitation_is_b_only(response: Any, a: World, b: World) -> None:
    # A's staff member's address: B may invite the same person; the invitation is B's alone.
    invitation_id = response.json["id"]
    assert invitation_id in b.tenant.api.get("/v1/staff/invitations", limit=100).get_data(as_text=True)
    assert invitation_id not in a.tenant.api.get("/v1/staff/invitations", limit=100).get_data(as_text=True)


def _signup_is_a_new_tenant(response: Any, a: World, b: World) -> None:
    # A's slug as the brand's name: the new tenant gets another slug, and A is untouched.
    tenant = response.json["tenant"]
    assert tenant["slug"] != a.tenant.slug, tenant
    assert tenant["id"] not in (a.tenant.id, b.tenant.id), tenant


def _signup_body(a: World, b: World) -> dict[str, Any]:
    return {
        "email": f"founder-{secrets.token_hex(4)}@example.com",
        "password": PASSWORD,
        "company": "Another company",
        "brand_name": a.tenant.slug,
        "country": "FR",
        "currency": "EUR",
    }


def _brand_is_b_only(response: Any, a: World, b: World) -> None:
    # B named its brand after A's; A's brand is untouched and B reads back its own.
    assert response.json["display_name"] == f"Brand {a.tenant.slug}"
    assert a.tenant.api.get("/v1/tenant/brand").json["display_name"] == f"Brand {a.tenant.slug}"
    restored = b.tenant.api.request("PUT", "/v1/tenant/brand", brand_body(b.tenant))
    assert restored.status_code == 200, restored.json


def _billing_settings_are_b_only(response: Any, a: World, b: World) -> None:
    assert response.json["invoice_series"] == "B-"
    assert a.tenant.api.get("/v1/tenant/billing-settings").json["invoice_series"] == BILLING_SETTINGS["invoice_series"]
    restored = b.tenant.api.request("PUT", "/v1/tenant/billing-settings", BILLING_SETTINGS)
    assert restored.status_code == 200, restored.json


def _market_is_b_only(response: Any, a: World, b: World) -> None:
    assert response.json["languages"] == ["it"]
    assert a.tenant.api.get("/v1/tenant/market").json["languages"] != ["it"]


def _rate_card_is_b_only(response: Any, a: World, b: World) -> None:
    card_id = response.json["id"]
    assert b.tenant.api.get(f"/v1/rate-cards/{card_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/rate-cards/{card_id}").status_code == 404


def _promotion_is_b_only(response: Any, a: World, b: World) -> None:
    # A's code: codes are unique per tenant, so B may use it too; the promotion made is B's alone.
    promotion_id = response.json["id"]
    assert b.tenant.api.get(f"/v1/promotions/{promotion_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/promotions/{promotion_id}").status_code == 404


def _merchant_is_b_only(response: Any, a: World, b: World) -> None:
    # A's merchant's name: B may have a merchant of that name too; the merchant and its client are B's alone.
    merchant_id = response.json["id"]
    assert b.tenant.api.get(f"/v1/merchants/{merchant_id}").status_code == 200
    assert a.tenant.api.get(f"/v1/merchants/{merchant_id}").status_code == 404
    assert a.tenant.api.get(f"/v1/api-clients/{response.json['client_id']}").status_code == 404


def _carrier_billing_is_b_only(response: Any, a: World, b: World) -> None:
    assert response.json == {"mode": "barred", "monthly_cap": None}
    assert a.tenant.api.get("/v1/tenant/carrier-billing").json["mode"] == "allowed"
    restored = b.tenant.api.request("PUT", "/v1/tenant/carrier-billing", {"mode": "allowed"})
    assert restored.status_code == 200, restored.json


def _launch_refused_for_b_alone(response: Any, a: World, b: World) -> None:
    # Both are live: B's launch is refused for B's own standing, and A's is untouched.
    assert response.json["code"] == "tenant_already_live"
    assert a.tenant.api.get("/v1/onboarding").json["status"] == "active"


# Keyed "METHOD rule"; each answer is about B's own objects, so a success here is no leak.
WRITE_PROBES: dict[str, Probe] = {
    "POST /v1/offers": Probe(_offer_body, 201),
    # A's card's name and host network: B may use both; the card made is B's alone.
    "POST /v1/rate-cards": Probe(
        lambda a, b: {"name": f"Rates of {a.tenant.slug}", "network_agreement_id": "nag_sim_fr"},
        201,
        _rate_card_is_b_only,
    ),
    "POST /v1/customers": Probe(_customer_body, 201),
    "POST /v1/promotions": Probe(
        lambda a, b: {"code": a.promotion_code, "kind": "amount", "value": "1"}, 201, _promotion_is_b_only
    ),
    "POST /v1/subscriptions": Probe(
        lambda a, b: {"customer": a.customer_id, "offer": a.offer_id, "sim_type": "esim"}, 404
    ),
    "POST /v1/usage-records": Probe(_usage_body, 200, _usage_rejected),
    "POST /v1/billing-runs": Probe(lambda a, b: {"period": a.period}, 202, _run_sees_only_b),
    # A's line: not one of B's, so B cannot re-rate it.
    "POST /v1/rerating-runs": Probe(lambda a, b: {"period": a.period, "subscription": a.subscription_id}, 404),
    # A's receiver URL: tenants may share one; the endpoint made is B's alone.
    "POST /v1/webhook-endpoints": Probe(lambda a, b: {"url": a.webhook_url}, 201, _endpoint_is_b_only),
    # A's legal name: B may use it for itself; the profile written is B's alone.
    "PUT /v1/tenant/legal-profile": Probe(lambda a, b: legal_profile_body(a.tenant), 200, _legal_profile_is_b_only),
    # A's brand name: B may use it for itself; the brand written is B's alone.
    "PUT /v1/tenant/brand": Probe(lambda a, b: brand_body(a.tenant), 200, _brand_is_b_only),
    # Not an image: refused for what it is, whoever sends it.
    "PUT /v1/tenant/brand/logo": Probe(lambda a, b: {"logo": a.tenant.id}, 422),
    "PUT /v1/tenant/billing-settings": Probe(
        lambda a, b: {"payment_terms_days": 20, "invoice_series": "B-"}, 200, _billing_settings_are_b_only
    ),
    "PUT /v1/tenant/market": Probe(
        lambda a, b: {"currency": "EUR", "timezone": "Europe/Paris", "languages": ["it"], "tax_rate": "20"},
        200,
        _market_is_b_only,
    ),
    "PUT /v1/tenant/host-network": Probe(lambda a, b: {"agreement_id": "nag_sim_fr"}, 200),
    "POST /v1/tenant/launch": Probe(lambda a, b: {}, 409, _launch_refused_for_b_alone),
    # B's policy alone: A keeps allowing carrier billing.
    "PUT /v1/tenant/carrier-billing": Probe(lambda a, b: {"mode": "barred"}, 200, _carrier_billing_is_b_only),
    "POST /v1/merchants": Probe(lambda a, b: {"name": f"Merchant of {a.tenant.slug}"}, 201, _merchant_is_b_only),
    # A batch B makes is B's: its codes top up none of A's lines (the walk redeems nothing).
    "POST /v1/voucher-batches": Probe(lambda a, b: {"name": a.tenant.slug, "amount": "1.00", "count": 1}, 201),
    # B's back end is no merchant: refused before A's line is looked for.
    "POST /v1/carrier-charges": Probe(
        lambda a, b: {"subscription": a.subscription_id, "amount": "1.00", "description": "Stolen"}, 403
    ),
    # The client made is B's alone, whatever it is named.
    "POST /v1/api-clients": Probe(
        lambda a, b: {"name": "back end", "scopes": ["customers:read"]}, 201, _api_client_is_b_only
    ),
    "POST /v1/staff/invitations": Probe(
        lambda a, b: {"email": a.staff_email, "role": "support"}, 201, _invitation_is_b_only
    ),
    # Routes without a token: a bearer token changes nothing; A's slug and staff get nothing out of them.
    "POST /v1/signup": Probe(_signup_body, 201, _signup_is_a_new_tenant),
    "POST /v1/signup/verify": Probe(lambda a, b: {"token": secrets.token_urlsafe(32)}, 422),
    "POST /v1/signup/resend-verification": Probe(lambda a, b: {"email": a.staff_email, "tenant": a.tenant.slug}, 202),
    "POST /v1/console/sessions": Probe(
        lambda a, b: {"tenant": a.tenant.slug, "email": a.staff_email, "password": "a wrong guess 12345"}, 401
    ),
    "POST /v1/staff/invitations/accept": Probe(
        lambda a, b: {"token": secrets.token_urlsafe(32), "name": "Intruder", "password": PASSWORD}, 422
    ),
    # A's app's name and redirect URI: apps of two brands may share both; the app made is B's alone.
    "POST /v1/apps": Probe(
        lambda a, b: {"name": f"App of {a.tenant.slug}", "redirect_uris": ["com.example.app:/callback"]},
        201,
        _app_is_b_only,
    ),
}
# Plausible bodies for writes with a path parameter (so B's call is not refused for its body instead).
PARAMETER_POST_BODIES: dict[str, dict[str, Any]] = {
    "/v1/tenants/<tenant_id>/api-clients": {"name": "stolen", "scopes": ["offers:read"]},
    "/v1/api-clients/<api_client_id>/rotate-secret": {"overlap_seconds": 60},
    # Operator routes: tenant B's token is refused (403) whatever the body; A's standing is unchanged.
    "/v1/tenants/<tenant_id>/suspend": {"reason": "a tenant suspending another"},
    "/v1/tenants/<tenant_id>/resume": {},
    "/v1/tenants/<tenant_id>/offboard": {},
    "/v1/staff/<staff_user_id>": {"role": "read_only"},
    "/v1/apps/<app_id>": {"redirect_uris": ["https://b.example/callback"]},
    "/v1/rate-cards/<rate_card_id>/versions": {
        "effective_from": "2030-01-01",
        "lines": [
            {"prefix": "33", "zone": "F", "service": "voice", "price": "9", "first_increment": 1, "next_increment": 1}
        ],
    },
    "/v1/rate-cards/<rate_card_id>/quote": {
        "service": "voice",
        "called": "+33123456789",
        "started_at": "2026-05-01T10:00:00Z",
        "quantity": 60,
    },
    "/v1/usage-rejections/<usage_rejection_id>": {"quantity": 1},
    "/v1/subscriptions/<subscription_id>/top-ups": {"amount": "1.00"},
    "/v1/subscriptions/<subscription_id>/voucher-redemptions": {"code": "1234-5678-9012-3456"},
    "/v1/subscriptions/<subscription_id>/carrier-billing": {"barred": True},
    "/v1/carrier-charges/<carrier_charge_id>/refunds": {"amount": "0.10"},
    "/v1/subscriptions/<subscription_id>/spend-cap": {"amount": "1.00"},
    "/v1/customers/<customer_id>/spend-cap": {"amount": "1.00"},
    "/v1/subscriptions/<subscription_id>/purchases": {"offer_id": "off_01J00000000000000000000000"},
    "/v1/offers/<offer_id>/versions": {
        "price": "1.00",
        "allowances": [{"service": "data", "zone": "home", "amount": 1}],
        "usage_prices": {"home": {"data": "0", "voice": "0", "sms": "0"}},
        "effective_from": "2030-01-01",
    },
}


def _api_rules(app: Flask) -> list[Rule]:
    return sorted(
        (r for r in app.url_map.iter_rules() if r.rule == "/v1" or r.rule.startswith("/v1/")),
        key=lambda r: r.rule,
    )


def _methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def _path(rule: Rule, values: dict[str, str]) -> str:
    """The rule with its parameters (`<name>` or `<converter:name>`) filled in."""
    return PARAMETER.sub(lambda match: values[match[1]], rule.rule)


def _call(api: ApiCaller, method: str, path: str, body: dict[str, Any] | None) -> Any:
    return api.request(method, path, body if method in ("POST", "PUT", "PATCH") else None)


def _described(method: str, path: str, response: Any) -> str:
    return f"{method} {path} -> {response.status_code}: {response.get_data(as_text=True)[:300]}"


def _assert_no_leak(method: str, path: str, body: Any, response: Any, a_ids: dict[str, str]) -> None:
    """None of A's ids in B's answer, except those B itself sent (a 404 may name the id it was given)."""
    sent = path + json.dumps(body or {})
    unsent = {name: value for name, value in a_ids.items() if value not in sent}
    # Binary answers too (B's own logo): an id would show as its ASCII bytes.
    leaked = contains_any(response.get_data().decode("utf-8", "replace"), unsent)
    assert not leaked, (
        f"tenant A's {', '.join(leaked)} id(s) in tenant B's answer: {_described(method, path, response)}"
    )


def _refuses_clients(app: Flask, rule: Rule) -> bool:
    """A route for other kinds of caller only (a staff user's console session, a subscriber's app)."""
    kinds = getattr(app.view_functions[rule.endpoint], "_mvne_kinds", None)
    return kinds is not None and KIND_CLIENT not in kinds


@dataclass(frozen=True)
class Call:
    """One call of the walk: tenant B on one method of one rule, with tenant A's ids in the path."""

    rule: Rule
    method: str
    values: dict[str, str]
    target: str
    body: dict[str, Any]
    probe: Probe | None
    refuses_clients: bool = False

    def describe(self, response: Any) -> str:
        return _described(self.method, self.target, response)


def _values(rule: Rule, a_ids: dict[str, str]) -> dict[str, str]:
    known = {**TENANT_OBJECT_PARAMS, **OPERATOR_PARAMS}
    return {name: a_ids[known[name]] if name in known else PUBLIC_PARAMS[name] for name in rule.arguments}


def _calls(app: Flask, rules: list[Rule], a: World, b: World) -> list[Call]:
    calls = []
    for rule in rules:
        values = _values(rule, a.object_ids())
        path = _path(rule, values)
        for method in _methods(rule):
            probe = WRITE_PROBES.get(f"{method} {rule.rule}")
            body = probe.body(a, b) if probe else PARAMETER_POST_BODIES.get(rule.rule, {})
            listing = (
                method == "GET"
                and not rule.arguments
                and not rule.rule.startswith(OPERATOR_PREFIXES)
                and rule.rule not in PUBLIC_RULES
            )
            query = PUBLIC_LIST_QUERIES.get(rule.rule)
            target = path + (query(a, b) if query else "?limit=100" if listing else "")
            calls.append(Call(rule, method, values, target, body, probe, _refuses_clients(app, rule)))
    return calls


def _check(call: Call, response: Any, api: ApiCaller, a: World, b: World) -> None:
    """What tenant B must get from one call; raises AssertionError with the call and the answer."""
    status = response.status_code
    assert status < 500, f"server error: {call.describe(response)}"
    _assert_no_leak(call.method, call.target, call.body, response, a.object_ids())
    if call.rule.rule.startswith(OPERATOR_PREFIXES):
        assert status == 403, f"operator route answered a tenant: {call.describe(response)}"
    elif call.refuses_clients:
        code = (response.json or {}).get("code")
        # Refused for the kind of caller, or first for a scope no tenant client is ever granted (me:read).
        assert status == 403, f"expected 403: {call.describe(response)}"
        assert code in ("caller_kind_refused", "insufficient_scope"), call.describe(response)
    elif any(name in TENANT_OBJECT_PARAMS for name in call.rule.arguments):
        assert status == 404, f"expected 404: {call.describe(response)}"
        _assert_same_as_missing(api, call, response)
    elif call.rule.rule in PUBLIC_RULES:
        assert status in (200, 301, 302, 304, 308), call.describe(response)
    elif call.probe is not None:
        assert status == call.probe.status, f"expected {call.probe.status}: {call.describe(response)}"
        if call.probe.check:
            call.probe.check(response, a, b)
    else:  # a list of the caller's own objects
        assert status == 200, call.describe(response)
        own = LIST_OWN_OBJECT.get(call.rule.rule)
        if own:
            assert b.object_ids()[own] in response.get_data(as_text=True), (
                f"tenant B's own {own} missing from {call.method} {call.target}: the list may show nothing at all"
            )


def _assert_same_as_missing(api: ApiCaller, call: Call, seen: Any) -> None:
    """A's object must look exactly like one that does not exist: same status, same problem code."""
    missing = {
        name: new_id(ID_PREFIXES[TENANT_OBJECT_PARAMS[name]]) if name in TENANT_OBJECT_PARAMS else value
        for name, value in call.values.items()
    }
    path = _path(call.rule, missing)
    response = _call(api, call.method, path, call.body)
    assert (response.status_code, (response.json or {}).get("code")) == (
        seen.status_code,
        (seen.json or {}).get("code"),
    ), f"A's object and a missing one answer differently: {_described(call.method, path, response)}"


def _assert_walk_knows_every_route(app: Flask, rules: list[Rule]) -> None:
    known = {*TENANT_OBJECT_PARAMS, *OPERATOR_PARAMS, *PUBLIC_PARAMS}
    unknown = sorted(f"<{name}> in {rule.rule}" for rule in rules for name in rule.arguments if name not in known)
    assert not unknown, (
        "route parameters the isolation walk does not know: "
        f"{', '.join(unknown)}. Add each to TENANT_OBJECT_PARAMS (an object a tenant owns, with tenant A's id), "
        "OPERATOR_PARAMS or PUBLIC_PARAMS in tests/isolation/test_route_walk.py."
    )
    missing_probes = sorted(
        f"{method} {rule.rule}"
        for rule in rules
        for method in _methods(rule)
        if method != "GET"
        and not rule.arguments
        and not rule.rule.startswith(OPERATOR_PREFIXES)
        and not _refuses_clients(app, rule)
        and f"{method} {rule.rule}" not in {**WRITE_PROBES, **SUBSCRIBER_WRITE_PROBES}
    )
    assert not missing_probes, (
        f"write routes without a probe: {', '.join(missing_probes)}. Add a Probe to WRITE_PROBES in "
        "tests/isolation/test_route_walk.py: a body aimed at tenant A's objects and the status tenant B must get."
    )


def test_every_v1_route_keeps_tenant_a_objects_from_tenant_b(
    app: Flask, two_tenants: TwoTenants, operator: Operator
) -> None:
    a, b = two_tenants.a, two_tenants.b
    rules = _api_rules(app)
    assert len(rules) > 10, [r.rule for r in rules]
    _assert_walk_knows_every_route(app, rules)

    calls = _calls(app, rules, a, b)
    failures: list[str] = []
    for call in calls:
        response = _call(b.tenant.api, call.method, call.target, call.body)
        try:
            _check(call, response, b.tenant.api, a, b)
        except AssertionError as error:
            failures.append(str(error).split("\nassert ")[0])
    assert not failures, f"{len(failures)} isolation failure(s):\n" + "\n".join(failures)
    assert len(calls) >= 20, [f"{c.method} {c.target}" for c in calls]

    # Positive controls: the same routes serve A (and operators), so B's 404s are about tenancy.
    for call in calls:
        if call.method != "GET" or not call.rule.arguments or call.rule.rule in PUBLIC_RULES:
            continue
        if _for_subscribers(call.rule):
            continue  # A's subscriber reads these in the subscribers' walk
        owner = operator.api if call.rule.rule.startswith(OPERATOR_PREFIXES) else a.tenant.api
        response = owner.get(call.target)
        assert response.status_code == 200, f"the owner cannot read it: {call.describe(response)}"

    # Nothing B did changed A's objects.
    assert a.tenant.api.get(f"/v1/offers/{a.offer_id}").json["status"] == "published"
    assert a.tenant.api.get(f"/v1/customers/{a.customer_id}").json["email"] == a.customer_email
    assert a.tenant.api.get(f"/v1/subscriptions/{a.subscription_id}").json["status"] == "active"
    assert a.tenant.api.get(f"/v1/webhook-endpoints/{a.webhook_endpoint_id}").json["status"] == "enabled"
    a_usage = a.tenant.api.get(f"/v1/subscriptions/{a.subscription_id}/usage", period=a.period).json
    records = {s["service"]: s["records"] for s in a_usage["services"]}
    assert records == {"data": 1, "voice": 0, "sms": 0, "mms": 0}, a_usage
    a_invoices = a.tenant.api.get("/v1/invoices", limit=100).json["data"]
    assert [i["id"] for i in a_invoices] == [a.invoice_id]
    a_card = a.tenant.api.get(f"/v1/rate-cards/{a.rate_card_id}").json
    assert [(v["id"], v["status"]) for v in a_card["versions"]] == [(a.rate_card_version_id, "published")]
    a_runs = a.tenant.api.get("/v1/billing-runs", limit=100).json["data"]
    assert [r["id"] for r in a_runs] == [a.billing_run_id]


def test_query_filters_do_not_reach_another_tenant(two_tenants: TwoTenants) -> None:
    a, b = two_tenants.a, two_tenants.b
    for path in ("/v1/invoices", "/v1/subscriptions"):
        response = b.tenant.api.get(path, customer=a.customer_id)
        assert response.status_code == 200, response.json
        assert response.json["data"] == [], response.json
    by_period = b.tenant.api.get("/v1/invoices", period=a.period, limit=100)
    assert by_period.status_code == 200, by_period.json
    assert a.invoice_id not in by_period.get_data(as_text=True)
    assert b.invoice_id in by_period.get_data(as_text=True)
    # A cursor at A's id pages B's own rows; it never reveals A's.
    after = b.tenant.api.get("/v1/customers", starting_after=a.customer_id, limit=100)
    assert after.status_code == 200
    assert not contains_any(after.get_data(as_text=True), a.object_ids())


def test_a_subscription_cannot_be_ordered_on_another_tenant_customer_or_offer(two_tenants: TwoTenants) -> None:
    a, b = two_tenants.a, two_tenants.b
    before = [s["id"] for s in b.tenant.api.get("/v1/subscriptions", limit=100).json["data"]]
    for customer_id, offer_id in (
        (a.customer_id, a.offer_id),
        (a.customer_id, b.offer_id),
        (b.customer_id, a.offer_id),
    ):
        response = b.tenant.api.post(
            "/v1/subscriptions", {"customer": customer_id, "offer": offer_id, "sim_type": "esim"}
        )
        assert response.status_code == 404, (customer_id, offer_id, response.json)
    assert [s["id"] for s in b.tenant.api.get("/v1/subscriptions", limit=100).json["data"]] == before
    a_subs = a.tenant.api.get("/v1/subscriptions", limit=100).json["data"]
    assert [s["id"] for s in a_subs] == [a.subscription_id]


def test_an_idempotency_key_replays_only_to_the_client_that_used_it(two_tenants: TwoTenants) -> None:
    a, b = two_tenants.a, two_tenants.b
    key = f"iso-{secrets.token_hex(6)}"
    body = {
        "name": "Keyed",
        "email": f"keyed-{secrets.token_hex(4)}@example.com",
        "address": {"line1": "3 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
    }
    first = a.tenant.api.post("/v1/customers", body, key=key)
    assert first.status_code == 201, first.json
    second = b.tenant.api.post("/v1/customers", body, key=key)
    assert second.status_code == 201, second.json
    assert second.headers.get("Idempotent-Replayed") is None
    assert second.json["id"] != first.json["id"]
    assert b.tenant.api.get(f"/v1/customers/{first.json['id']}").status_code == 404


# The subscribers' walk ----------------------------------------------------------------------------------------

STRONG_PASSWORD = "violet quarry lantern marmalade"


@dataclass(frozen=True)
class Walker:
    """A subscriber who is not tenant A's: their token, and what of their own a list must show."""

    name: str
    api: ApiCaller
    own: dict[str, str]


def _password_is_the_walkers_own(response: Any, a: World, walker: Walker) -> None:
    assert walker.api.get("/v1/me").json["has_password"] is True
    assert a.subscriber.get("/v1/me").json["has_password"] is False


# Keyed "METHOD rule": a write of the walker's own account, with what must hold after it.
SUBSCRIBER_WRITE_PROBES: dict[str, tuple[dict[str, Any], int, Callable[[Any, World, Walker], None]]] = {
    "PUT /v1/me/password": ({"new_password": STRONG_PASSWORD}, 204, _password_is_the_walkers_own),
}
# A list of the subscriber's own and the kind of object of theirs it must show.
SUBSCRIBER_LISTS = {"/v1/me": "customer", "/v1/me/lines": "subscription", "/v1/me/invoices": "invoice"}


def _walk_me(app: Flask, walker: Walker, a: World) -> list[str]:
    """The walker on every /v1/me route, with A's subscriber's ids in the path: 404 like a missing id, never data."""
    failures = []
    a_ids = a.subscriber_ids()
    for rule in _api_rules(app):
        if not _for_subscribers(rule):
            continue
        values = _values(rule, a.object_ids())
        for method in _methods(rule):
            probe = SUBSCRIBER_WRITE_PROBES.get(f"{method} {rule.rule}")
            body = probe[0] if probe else {}
            target = _path(rule, values)
            call = Call(rule, method, values, target, body, None)
            response = _call(walker.api, method, target, body)
            try:
                assert response.status_code < 500, f"server error: {call.describe(response)}"
                _assert_no_leak(method, target, body, response, a_ids)
                if rule.arguments:
                    assert response.status_code == 404, f"expected 404: {call.describe(response)}"
                    _assert_same_as_missing(walker.api, call, response)
                elif probe is not None:
                    assert response.status_code == probe[1], f"expected {probe[1]}: {call.describe(response)}"
                    probe[2](response, a, walker)
                else:
                    assert response.status_code == 200, call.describe(response)
                    own = walker.own.get(SUBSCRIBER_LISTS.get(rule.rule, ""))
                    if own:
                        assert own in response.get_data(as_text=True), f"own object missing: {call.describe(response)}"
            except AssertionError as error:
                failures.append(f"{walker.name}: {str(error).split(chr(10) + 'assert ')[0]}")
    return failures


def _walk_tenant_routes(app: Flask, walker: Walker, a: World, b: World) -> list[str]:
    """The walker on every other protected route, with A's ids: 403, whatever it asks."""
    failures = []
    rules = [
        rule
        for rule in _api_rules(app)
        if not _for_subscribers(rule) and getattr(app.view_functions[rule.endpoint], "_mvne_scope", None) is not None
    ]
    for call in _calls(app, rules, a, b):
        response = _call(walker.api, call.method, call.target, call.body)
        try:
            _assert_no_leak(call.method, call.target, call.body, response, a.object_ids())
            assert response.status_code == 403, f"{walker.name}: {call.describe(response)}"
        except AssertionError as error:
            failures.append(str(error).split("\nassert ")[0])
    return failures


def test_every_me_route_keeps_a_subscriber_to_their_own_data(app: Flask, two_tenants: TwoTenants) -> None:
    a, b = two_tenants.a, two_tenants.b
    # A second subscriber of tenant A itself, signed in through A's app: same tenant, other person.
    neighbour = customer(a.tenant.api, name="A's other subscriber")
    walkers = [
        Walker("tenant B's subscriber", b.subscriber, b.subscriber_ids()),
        Walker(
            "tenant A's other subscriber",
            subscriber_api(app.test_client(), a.app_id, neighbour["email"]),
            {"customer": neighbour["id"]},
        ),
    ]

    failures = [failure for walker in walkers for failure in _walk_me(app, walker, a)]
    failures += [failure for walker in walkers for failure in _walk_tenant_routes(app, walker, a, b)]

    assert not failures, f"{len(failures)} isolation failure(s):\n" + "\n".join(failures)
    # Positive control: A's subscriber reads every one of them.
    for rule in _api_rules(app):
        if _for_subscribers(rule) and "GET" in _methods(rule):
            path = _path(rule, _values(rule, a.object_ids()))
            assert a.subscriber.get(path).status_code == 200, path
