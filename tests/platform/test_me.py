"""`/v1/me`: each subscriber reads their own profile, lines, usage, invoices, PDFs and eSIM, and nobody else's;
subscribers' tokens reach nothing of the tenant's, and tenants' tokens nothing of `/v1/me`."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.tenants.service import issue_api_client
from tests.platform.problems import assert_problem
from tests.support.api import (
    ApiCaller,
    Operator,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    last_period,
    make_tenant,
    published_offer,
    token_for,
    wait_for,
)
from tests.support.subscribers import register_app, subscriber_api

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Subscriber:
    """A customer with one active line and one invoice, and their token from the tenant's app."""

    tenant: TenantHandle
    customer: dict[str, Any]
    line: dict[str, Any]
    invoice_id: str
    api: ApiCaller


def _billed(app: Flask, runtime: Runtime, handle: TenantHandle, names: list[str]) -> list[Subscriber]:
    """Customers of `handle`, each with a line active since last period, some usage, and last period's invoice."""
    offer = published_offer(handle.api, code=f"ME-{secrets.token_hex(3)}")
    period, period_start = last_period()
    people = []
    for name in names:
        person = customer(handle.api, name=name)
        line = active_subscription(handle.api, person["id"], offer["id"])
        backdate_line(runtime, line["id"], period_start)
        record = {
            "record_id": f"me-{secrets.token_hex(4)}",
            "subscription": line["id"],
            "service": "data",
            "started_at": (period_start + dt.timedelta(days=1)).isoformat(),
            "volume": 2_000_000,
        }
        assert handle.api.post("/v1/usage-records", {"records": [record]}).json["accepted"] == 1
        people.append((person, line))
    run = handle.api.post("/v1/billing-runs", {"period": period}).json

    def finished() -> dict[str, Any] | None:
        current = handle.api.get(f"/v1/billing-runs/{run['id']}").json
        return current if current["status"] not in ("pending", "running") else None

    assert wait_for(finished, what="billing run")["status"] == "completed"
    self_care = register_app(handle.api)
    subscribers = []
    for person, line in people:
        invoices = handle.api.get("/v1/invoices", customer=person["id"]).json["data"]
        assert len(invoices) == 1, invoices
        api = subscriber_api(app.test_client(), self_care["client_id"], person["email"])
        subscribers.append(Subscriber(handle, person, line, invoices[0]["id"], api))
    return subscribers


@dataclass(frozen=True)
class People:
    ada: Subscriber
    bob: Subscriber  # Ada's neighbour: the same tenant
    carol: Subscriber  # another tenant's subscriber


@pytest.fixture(scope="module")
def people(app: Flask, runtime: Runtime, operator: Operator, live_url: str) -> People:
    ada, bob = _billed(app, runtime, make_tenant(app.test_client(), operator), ["Ada Martin", "Bob Durand"])
    (carol,) = _billed(app, runtime, make_tenant(app.test_client(), operator), ["Carol Petit"])
    return People(ada, bob, carol)


def _own_paths(person: Subscriber) -> list[str]:
    line, invoice = person.line["id"], person.invoice_id
    return [
        f"/v1/me/lines/{line}",
        f"/v1/me/lines/{line}/usage",
        f"/v1/me/lines/{line}/esim",
        f"/v1/me/invoices/{invoice}",
        f"/v1/me/invoices/{invoice}/pdf",
    ]


@pytest.mark.parametrize("who", ["ada", "bob", "carol"])
def test_each_subscriber_reads_their_own_profile_lines_usage_invoices_pdf_and_esim(people: People, who: str) -> None:
    person: Subscriber = getattr(people, who)
    line_id = person.line["id"]

    me = person.api.get("/v1/me")
    lines = person.api.get("/v1/me/lines")
    line = person.api.get(f"/v1/me/lines/{line_id}")
    usage = person.api.get(f"/v1/me/lines/{line_id}/usage", period=last_period()[0])
    invoices = person.api.get("/v1/me/invoices")
    invoice = person.api.get(f"/v1/me/invoices/{person.invoice_id}")
    pdf = person.api.get(f"/v1/me/invoices/{person.invoice_id}/pdf")
    esim = person.api.get(f"/v1/me/lines/{line_id}/esim")

    assert me.status_code == 200, me.json
    assert (me.json["customer"], me.json["name"], me.json["email"]) == (
        person.customer["id"],
        person.customer["name"],
        person.customer["email"],
    )
    assert [item["id"] for item in lines.json["data"]] == [line_id]
    assert line.json["msisdn"] == person.line["msisdn"]
    assert (line.json["status"], line.json["offer"]["id"]) == ("active", person.line["offer"])
    assert {s["service"]: s["records"] for s in usage.json["services"]} == {"data": 1, "voice": 0, "sms": 0, "mms": 0}
    assert [item["id"] for item in invoices.json["data"]] == [person.invoice_id]
    assert invoice.json["customer"] == person.customer["id"]
    assert invoice.json["pdf_url"].endswith(f"/v1/me/invoices/{person.invoice_id}/pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    tenant_view = person.tenant.api.get(f"/v1/subscriptions/{line_id}").json["esim"]
    assert esim.status_code == 200, esim.json
    assert esim.json["activation_code"] == tenant_view["activation_code"]
    assert esim.json["activation_code"].startswith("LPA:1$")
    png = esim.json["qr_code_png"].removeprefix("data:image/png;base64,")
    assert base64.b64decode(png).startswith(PNG_SIGNATURE)
    assert esim.json["qr_code_svg"].startswith("data:image/svg+xml;base64,")


@pytest.mark.parametrize(("who", "whose"), [("ada", "bob"), ("bob", "ada"), ("ada", "carol"), ("carol", "ada")])
def test_another_subscribers_lines_and_invoices_are_not_found_like_missing_ones(
    people: People, who: str, whose: str
) -> None:
    person: Subscriber = getattr(people, who)
    other: Subscriber = getattr(people, whose)
    missing = Subscriber(other.tenant, other.customer, {"id": new_id("sub")}, new_id("inv"), other.api)

    for theirs, nobodys in zip(_own_paths(other), _own_paths(missing), strict=True):
        seen = person.api.get(theirs)
        absent = person.api.get(nobodys)
        code = "subscription_not_found" if "/lines/" in theirs else "invoice_not_found"
        assert_problem(seen, 404, code)
        assert_problem(absent, 404, code)
    for listing in ("/v1/me/lines", "/v1/me/invoices"):
        text = person.api.get(listing, limit=100).get_data(as_text=True)
        assert other.line["id"] not in text
        assert other.invoice_id not in text


def test_a_subscriber_token_reaches_nothing_of_the_tenants(people: People) -> None:
    ada = people.ada

    for path in ("/v1/customers", f"/v1/subscriptions/{ada.line['id']}", f"/v1/invoices/{ada.invoice_id}", "/v1/apps"):
        assert_problem(ada.api.get(path), 403, "insufficient_scope")
    assert_problem(ada.api.post("/v1/api-clients", {"name": "mine", "scopes": ["me:read"]}), 403, "insufficient_scope")
    assert_problem(ada.api.get("/v1/tenants"), 403, "insufficient_scope")


def test_a_tenants_client_token_cannot_call_me(
    people: People, operator: Operator, app: Flask, runtime: Runtime
) -> None:
    tenant = people.ada.tenant

    for path in ("/v1/me", "/v1/me/lines", f"/v1/me/lines/{people.ada.line['id']}"):
        assert_problem(tenant.api.get(path), 403, "insufficient_scope")
    assert_problem(operator.api.get("/v1/me"), 403, "insufficient_scope")
    # Even a back end holding the scope (no route grants it one) is not a subscriber.
    with runtime.db.transaction(platform=True) as session:
        issued = issue_api_client(
            session, tenant_id=tenant.id, name="confused", scopes=["me:read"], allowed=("me:read",)
        )
    confused = ApiCaller(app.test_client(), token_for(app.test_client(), issued.client_id, issued.client_secret))
    assert_problem(confused.get("/v1/me"), 403, "caller_kind_refused")


def test_the_answers_of_me_are_among_the_documented_ones(people: People, api: ApiCaller) -> None:
    document = api.get("/v1/openapi.json").json
    paths = document["paths"]

    assert "caller_kind_refused" in str(paths["/v1/me"]["get"]["responses"]["403"])
    assert "subscription_not_found" in str(paths["/v1/me/lines/{subscription_id}"]["get"]["responses"]["404"])
    assert "esim_not_ready" in str(paths["/v1/me/lines/{subscription_id}/esim"]["get"]["responses"]["409"])
    assert paths["/v1/me"]["get"]["security"] == [{"oauth2": ["me:read"]}, {"bearer": ["me:read"]}]
