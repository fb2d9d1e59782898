"""Carrier billing through the API: the tenant's policy, lines barred, merchants' charges and refunds, and invoices."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from mvne.charging.billing import invoice_customer, invoice_lines
from mvne.charging.carrier_models import CarrierCharge
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from tests.charging.test_rating_scenarios import line_on
from tests.support.api import (
    ApiCaller,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    last_period,
    published_offer,
    token_for,
    wait_for,
)

CHARGES = "/v1/carrier-charges"


def merchant(app: Flask, tenant: TenantHandle, name: str = "Arcade Games") -> tuple[dict[str, Any], ApiCaller]:
    """A merchant of the tenant, and a caller with a token of its client."""
    made = tenant.api.post("/v1/merchants", {"name": name})
    assert made.status_code == 201, made.json
    client = app.test_client()
    return dict(made.json), ApiCaller(client, token_for(client, made.json["client_id"], made.json["client_secret"]))


def set_policy(tenant: TenantHandle, mode: str, cap: str | None = None) -> Any:
    body: dict[str, Any] = {"mode": mode}
    if cap is not None:
        body["monthly_cap"] = cap
    return tenant.api.request("PUT", "/v1/tenant/carrier-billing", body)


def charge_body(line: dict[str, Any], amount: str, **extra: Any) -> dict[str, Any]:
    return {"subscription": line["id"], "amount": amount, "description": "1,000 gems", **extra}


def problem_code(response: Any) -> tuple[int, str | None]:
    return response.status_code, (response.json or {}).get("code")


@pytest.fixture
def shop(app: Flask, tenant: TenantHandle) -> ApiCaller:
    """A merchant's caller on a tenant that allows carrier billing."""
    assert set_policy(tenant, "allowed").status_code == 200
    return merchant(app, tenant)[1]


def test_carrier_billing_is_barred_until_the_tenant_allows_it(app: Flask, tenant: TenantHandle) -> None:
    line = line_on(tenant.api)
    _, caller = merchant(app, tenant)

    before = tenant.api.get("/v1/tenant/carrier-billing")
    barred = caller.post(CHARGES, charge_body(line, "1.00"))
    allowed = set_policy(tenant, "allowed")
    accepted = caller.post(CHARGES, charge_body(line, "1.00"))

    assert before.json == {"mode": "barred", "monthly_cap": None}
    assert problem_code(barred) == (403, "carrier_billing_barred")
    assert allowed.json == {"mode": "allowed", "monthly_cap": None}
    assert accepted.status_code == 201, accepted.json
    assert (accepted.json["status"], accepted.json["payment"], accepted.json["amount"]) == (
        "accepted",
        "invoice",
        "1.00",
    )
    refused = tenant.api.get(CHARGES, status="refused").json["data"]
    assert [(c["refusal_code"], c["subscription"]) for c in refused] == [("carrier_billing_barred", line["id"])]


def test_a_capped_policy_needs_a_cap_in_the_currency(tenant: TenantHandle) -> None:
    for cap in (None, "0", "20.001", "-5"):
        refused = set_policy(tenant, "capped", cap)
        assert refused.status_code == 422, (cap, refused.json)
    capped = set_policy(tenant, "capped", "20.00")
    assert capped.json == {"mode": "capped", "monthly_cap": "20.00"}
    # Another mode keeps no cap, so switching back to capped asks for one again.
    assert set_policy(tenant, "allowed", "20.00").json == {"mode": "allowed", "monthly_cap": None}


def test_a_charge_exactly_at_the_cap_is_accepted_and_one_cent_over_is_refused(app: Flask, tenant: TenantHandle) -> None:
    line = line_on(tenant.api)
    other = line_on(tenant.api)
    set_policy(tenant, "capped", "20.00")
    _, caller = merchant(app, tenant)

    first = caller.post(CHARGES, charge_body(line, "15.00"))
    to_the_cap = caller.post(CHARGES, charge_body(line, "5.00"))
    over = caller.post(CHARGES, charge_body(line, "0.01"))
    other_line = caller.post(CHARGES, charge_body(other, "20.00"))

    assert (first.status_code, to_the_cap.status_code, other_line.status_code) == (201, 201, 201)
    assert problem_code(over) == (409, "monthly_cap_exceeded")
    # What a merchant refunds no longer counts against the cap.
    assert caller.post(f"{CHARGES}/{first.json['id']}/refunds", {"amount": "0.01"}).status_code == 201
    assert caller.post(CHARGES, charge_body(line, "0.01")).status_code == 201
    assert problem_code(caller.post(CHARGES, charge_body(line, "0.01"))) == (409, "monthly_cap_exceeded")


def test_a_barred_line_is_refused_whatever_the_tenant_allows(tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    path = f"/v1/subscriptions/{line['id']}/carrier-billing"

    assert tenant.api.get(path).json == {"subscription": line["id"], "barred": False}
    assert tenant.api.request("PUT", path, {"barred": True}).json == {"subscription": line["id"], "barred": True}
    refused = shop.post(CHARGES, {"msisdn": line["msisdn"], "amount": "2.00", "description": "Ringtone"})
    assert tenant.api.request("PUT", path, {"barred": False}).status_code == 200
    accepted = shop.post(CHARGES, {"msisdn": line["msisdn"], "amount": "2.00", "description": "Ringtone"})

    assert problem_code(refused) == (403, "line_barred")
    assert accepted.status_code == 201, accepted.json
    assert accepted.json["subscription"] == line["id"]
    assert problem_code(tenant.api.request("PUT", path, {"barred": "yes"})) == (422, "validation_failed")


def test_a_line_not_active_or_not_found_is_refused(runtime: Runtime, tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    with runtime.db.transaction(platform=True) as session:
        session.execute(update(Subscription).where(Subscription.id == line["id"]).values(status="suspended"))

    suspended = shop.post(CHARGES, charge_body(line, "1.00"))
    missing = shop.post(CHARGES, {"msisdn": "+33799999999", "amount": "1.00", "description": "x"})

    assert problem_code(suspended) == (409, "line_not_active")
    assert problem_code(missing) == (404, "subscription_not_found")
    refused = tenant.api.get(CHARGES, status="refused").json["data"]
    assert [(c["refusal_code"], c["line_reference"]) for c in refused] == [
        ("line_not_active", line["id"]),
        ("subscription_not_found", "+33799999999"),
    ]


def test_a_prepaid_line_pays_at_once_from_its_balance_and_is_refused_when_short(
    tenant: TenantHandle, shop: ApiCaller
) -> None:
    line = line_on(tenant.api)
    assert tenant.api.post(f"/v1/subscriptions/{line['id']}/top-ups", {"amount": "5.00"}).status_code == 201

    paid = shop.post(CHARGES, charge_body(line, "4.99"))
    short = shop.post(CHARGES, charge_body(line, "0.02"))
    balance = tenant.api.get(f"/v1/subscriptions/{line['id']}/balances").json["money"]
    movements = tenant.api.get(f"/v1/subscriptions/{line['id']}/balance-movements").json["data"]
    upcoming = tenant.api.get(f"/v1/customers/{line['customer']}/upcoming-invoice").json

    assert (paid.status_code, paid.json["payment"]) == (201, "balance"), paid.json
    assert problem_code(short) == (409, "insufficient_balance")
    assert balance == {"amount": "0.01", "currency": "EUR"}
    assert [(m["kind"], m["amount"], m["balance_after"]) for m in movements] == [
        ("top_up", "5.00", "5.00"),
        ("third_party", "-4.99", "0.01"),
    ]
    assert movements[1]["description"] == "Arcade Games: 1,000 gems"
    assert [line for line in upcoming["lines"] if line["kind"] == "third_party"] == []


def test_a_refund_goes_back_in_part_then_whole_and_never_beyond(tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    tenant.api.post(f"/v1/subscriptions/{line['id']}/top-ups", {"amount": "10.00"})
    charged = shop.post(CHARGES, charge_body(line, "4.00")).json
    refunds = f"{CHARGES}/{charged['id']}/refunds"

    partial = shop.post(refunds, {"amount": "1.50"})
    beyond = shop.post(refunds, {"amount": "2.51"})
    whole = tenant.api.post(refunds, {"amount": "2.50"})
    after = shop.post(refunds, {"amount": "0.01"})
    seen = tenant.api.get(f"{CHARGES}/{charged['id']}").json
    balance = tenant.api.get(f"/v1/subscriptions/{line['id']}/balances").json["money"]["amount"]

    assert (partial.status_code, partial.json["settlement"], partial.json["requested_by"]) == (
        201,
        "balance",
        "merchant",
    )
    assert problem_code(beyond) == (409, "refund_exceeds_charge")
    assert (whole.status_code, whole.json["requested_by"]) == (201, "tenant")
    assert problem_code(after) == (409, "refund_exceeds_charge")
    assert (seen["status"], seen["refunded_amount"]) == ("refunded", "4.00")
    assert [r["amount"] for r in seen["refunds"]] == ["1.50", "2.50"]
    assert balance == "10.00"


def test_a_retry_with_the_same_key_gives_the_same_charge_once(tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    body = charge_body(line, "3.00", merchant_reference="order-1")
    key = secrets.token_hex(8)

    first = shop.post(CHARGES, body, key=key)
    again = shop.post(CHARGES, body, key=key)
    same_reference = shop.post(CHARGES, body)

    assert first.status_code == 201, first.json
    assert again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert problem_code(same_reference) == (409, "merchant_reference_taken")
    assert [c["id"] for c in shop.get(CHARGES).json["data"]] == [first.json["id"]]


def test_a_merchant_sees_and_refunds_only_its_own_charges(app: Flask, tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    _, rival = merchant(app, tenant, "Rival")
    mine = shop.post(CHARGES, charge_body(line, "2.00")).json
    theirs = rival.post(CHARGES, charge_body(line, "3.00")).json

    assert [c["id"] for c in shop.get(CHARGES).json["data"]] == [mine["id"]]
    assert [c["id"] for c in rival.get(CHARGES).json["data"]] == [theirs["id"]]
    assert problem_code(rival.get(f"{CHARGES}/{mine['id']}")) == (404, "carrier_charge_not_found")
    assert problem_code(rival.post(f"{CHARGES}/{mine['id']}/refunds", {"amount": "1.00"})) == (
        404,
        "carrier_charge_not_found",
    )
    assert {c["id"] for c in tenant.api.get(CHARGES).json["data"]} == {mine["id"], theirs["id"]}
    # A merchant's client reaches nothing else of the tenant's.
    assert problem_code(shop.get("/v1/customers")) == (403, "insufficient_scope")


def test_a_merchant_cannot_charge_another_tenants_line(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    line = line_on(tenant.api)
    tenant.api.post(f"/v1/subscriptions/{line['id']}/top-ups", {"amount": "5.00"})
    set_policy(other_tenant, "allowed")
    _, stranger = merchant(app, other_tenant)
    mine = merchant(app, tenant)[1]
    set_policy(tenant, "allowed")
    charged = mine.post(CHARGES, charge_body(line, "1.00")).json

    by_id = stranger.post(CHARGES, charge_body(line, "1.00"))
    by_number = stranger.post(CHARGES, {"msisdn": line["msisdn"], "amount": "1.00", "description": "x"})
    peek = stranger.get(f"{CHARGES}/{charged['id']}")
    refund = stranger.post(f"{CHARGES}/{charged['id']}/refunds", {"amount": "1.00"})

    assert problem_code(by_id) == (404, "subscription_not_found")
    assert problem_code(by_number) == (404, "subscription_not_found")
    assert problem_code(peek) == (404, "carrier_charge_not_found")
    assert problem_code(refund) == (404, "carrier_charge_not_found")
    assert tenant.api.get(f"/v1/subscriptions/{line['id']}/balances").json["money"]["amount"] == "4.00"
    assert [c["id"] for c in tenant.api.get(CHARGES).json["data"]] == [charged["id"]]


def test_only_a_merchants_client_charges_and_a_suspended_merchant_is_refused(app: Flask, tenant: TenantHandle) -> None:
    line = line_on(tenant.api)
    set_policy(tenant, "allowed")
    made, caller = merchant(app, tenant)

    as_tenant = tenant.api.post(CHARGES, charge_body(line, "1.00"))
    suspended = tenant.api.post(f"/v1/merchants/{made['id']}/suspend")
    refused = caller.post(CHARGES, charge_body(line, "1.00"))
    reactivated = tenant.api.post(f"/v1/merchants/{made['id']}/reactivate")
    accepted = caller.post(CHARGES, charge_body(line, "1.00"))

    assert problem_code(as_tenant) == (403, "merchant_required")
    assert (suspended.json["status"], reactivated.json["status"]) == ("suspended", "active")
    assert problem_code(refused) == (403, "merchant_suspended")
    assert accepted.status_code == 201, accepted.json
    assert made["scopes"] == ["carrier_billing:charge"]
    assert [m["id"] for m in tenant.api.get("/v1/merchants").json["data"]] == [made["id"]]
    assert tenant.api.get(f"/v1/api-clients/{made['client_id']}").json["scopes"] == ["carrier_billing:charge"]


def test_charges_refusals_and_refunds_are_events(tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    charged = shop.post(CHARGES, charge_body(line, "2.00")).json
    shop.post(CHARGES, charge_body(line, "0"))
    shop.post(f"{CHARGES}/{charged['id']}/refunds", {"amount": "1.00"})

    events = tenant.api.get("/v1/events", limit=100).json["data"]
    types = [e["type"] for e in events if e["type"].startswith("carrier_charge.")]

    assert types == ["carrier_charge.created", "carrier_charge.refused", "carrier_charge.refunded"]
    refused = next(e for e in events if e["type"] == "carrier_charge.refused")
    assert refused["data"]["code"] == "invalid_amount"


@pytest.mark.parametrize(
    "amount",
    [4.99, 5, "4.99\x00", "1e3", "NaN", "Infinity", "123456789012345678901234567890", True, None, ["1"], {"a": 1}],
)
def test_hostile_amounts_are_refused_with_422_never_500(shop: ApiCaller, amount: Any) -> None:
    refused = shop.post(CHARGES, charge_body({"id": "sub_01M8NHTM21YRHT2QG60D9HJAWD"}, amount))
    assert problem_code(refused) == (422, "validation_failed"), refused.json


def test_hostile_input_is_refused_with_422_never_500(tenant: TenantHandle, shop: ApiCaller) -> None:
    line = line_on(tenant.api)
    for amount in ("0", "-1.00", "4.999", "1000.01"):
        assert problem_code(shop.post(CHARGES, charge_body(line, amount))) == (422, "invalid_amount"), amount
    for body in (
        {"subscription": "sub_\x00", "amount": "1.00", "description": "x"},
        {"subscription": line["id"], "amount": "1.00", "description": "a\x00b"},
        {"subscription": line["id"], "amount": "1.00", "description": "x" * 201},
        {"amount": "1.00", "description": "x"},
        {"subscription": line["id"], "msisdn": line["msisdn"], "amount": "1.00", "description": "x"},
        {"msisdn": "+33\x00", "amount": "1.00", "description": "x"},
        {"subscription": line["id"], "amount": "1.00", "description": "x", "merchant_reference": "r" * 101},
    ):
        assert problem_code(shop.post(CHARGES, body)) == (422, "validation_failed"), body
    charged = shop.post(CHARGES, charge_body(line, "1.00")).json
    for amount in (0.5, "1e0", "0.5\x00", "99999999999999999999"):
        refused = shop.post(f"{CHARGES}/{charged['id']}/refunds", {"amount": amount})
        assert problem_code(refused) == (422, "validation_failed"), amount
    assert problem_code(shop.post(f"{CHARGES}/{charged['id']}/refunds", {"amount": "0.001"})) == (
        422,
        "invalid_amount",
    )
    assert shop.get(f"{CHARGES}/cch_\x00").status_code in (404, 422)
    assert problem_code(tenant.api.get(CHARGES, status="gone")) == (422, "validation_failed")
    for body in ({"mode": "sometimes"}, {"mode": "capped", "monthly_cap": 20}, {"mode": "capped\x00"}):
        assert set_policy_body(tenant, body).status_code == 422, body
    assert tenant.api.post("/v1/merchants", {"name": "\x00"}).status_code == 422


def set_policy_body(tenant: TenantHandle, body: dict[str, Any]) -> Any:
    return tenant.api.request("PUT", "/v1/tenant/carrier-billing", body)


def test_a_postpaid_charge_is_billed_once_on_an_invoice_and_a_later_refund_is_credited(
    runtime: Runtime, tenant: TenantHandle, shop: ApiCaller
) -> None:
    line = line_on(tenant.api)
    refunded_before = shop.post(CHARGES, charge_body(line, "2.00")).json
    charged = shop.post(CHARGES, charge_body(line, "4.99")).json
    shop.post(f"{CHARGES}/{refunded_before['id']}/refunds", {"amount": "0.50"})
    upcoming = tenant.api.get(f"/v1/customers/{line['customer']}/upcoming-invoice").json
    preview = [(x["description"], x["amount"]) for x in upcoming["lines"] if x["kind"] == "third_party"]

    with runtime.db.transaction(tenant_id=tenant.id) as session:
        invoice = invoice_customer(
            session, tenant_id=tenant.id, customer_id=line["customer"], period=upcoming["period"]
        )
        assert invoice is not None
        billed = [(x.description, x.amount) for x in invoice_lines(session, invoice.id) if x.kind == "third_party"]
        invoice_id, total = invoice.id, invoice.total
    credit = shop.post(f"{CHARGES}/{charged['id']}/refunds", {"amount": "1.00"})
    later = tenant.api.get(f"/v1/customers/{line['customer']}/upcoming-invoice").json

    label = f"Arcade Games: 1,000 gems ({line['msisdn']})"
    assert preview == [(label, "1.50"), (label, "4.99")]
    assert billed == [(label, Decimal("1.50")), (label, Decimal("4.99"))]
    # Collected for the merchant: outside the VAT base, the 20.00 fee alone is taxed.
    assert total == Decimal("20.00") + Decimal("4.00") + Decimal("6.49")
    assert tenant.api.get(f"{CHARGES}/{charged['id']}").json["invoice"] == invoice_id
    assert credit.json["settlement"] == "credit"
    assert [(x["description"], x["amount"]) for x in later["lines"] if x["kind"] == "third_party"] == [
        (f"Refund, {label}", "-1.00")
    ]


def test_a_billing_run_bills_a_postpaid_charge_of_the_period_once(
    runtime: Runtime, tenant: TenantHandle, shop: ApiCaller
) -> None:
    offer = published_offer(tenant.api, code=f"CB-{secrets.token_hex(3)}")
    line = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    period, start = last_period()
    backdate_line(runtime, line["id"], start)
    charged = shop.post(CHARGES, charge_body(line, "7.50")).json
    # Made in the last period, as a charge of a line migrated from another platform would be.
    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(CarrierCharge)
            .where(CarrierCharge.id == charged["id"])
            .values(period=period, created_at=start + dt.timedelta(days=3))
        )

    run = tenant.api.post("/v1/billing-runs", {"period": period})
    assert run.status_code == 202, run.json
    [invoice] = wait_for(
        lambda: tenant.api.get("/v1/invoices", customer=line["customer"]).json["data"], what="the invoice"
    )
    upcoming = tenant.api.get(f"/v1/customers/{line['customer']}/upcoming-invoice").json

    third_party = [(x["description"], x["amount"]) for x in invoice["lines"] if x["kind"] == "third_party"]
    assert third_party == [(f"Arcade Games: 1,000 gems ({line['msisdn']})", "7.50")]
    assert [x for x in upcoming["lines"] if x["kind"] == "third_party"] == []
    assert tenant.api.get(f"{CHARGES}/{charged['id']}").json["invoice"] == invoice["id"]
