"""A sandbox tenant's onboarding checklist, from empty to live, each step's refusals, and the launch."""

from __future__ import annotations

import datetime as dt
import secrets
import struct
import zlib
from typing import Any

import pytest
from flask import Flask

from mvne.infra.runtime import Runtime
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
    wait_for,
)
from tests.tenants.test_legal_profile import PROFILE

STEPS = ["brand", "legal_profile", "market", "host_network", "number_range", "billing", "offer"]
BRAND = {
    "display_name": "Nimbus Mobile",
    "primary_color": "#1F4FD1",
    "accent_color": "#f5a623",
    "support_email": "help@nimbus.example",
    "support_phone": "01 23 45 67 89",
    "support_url": "https://nimbus.example/help",
}
MARKET = {"currency": "EUR", "timezone": "Europe/Paris", "languages": ["fr-FR", "en"], "tax_rate": "20"}
BILLING = {"payment_terms_days": 30, "invoice_series": "NIM-"}


def png(width: int = 1, height: int = 1, extra: bytes = b"") -> bytes:
    """A valid PNG image (grey pixels), with `extra` bytes in a private chunk to make it as large as needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    private = chunk(b"ruBy", extra) if extra else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + private + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def put_logo(api: ApiCaller, data: bytes, content_type: str) -> Any:
    return api.client.put("/v1/tenant/brand/logo", data=data, headers=api.headers({"Content-Type": content_type}))


def put(api: ApiCaller, path: str, body: dict[str, Any]) -> Any:
    return api.request("PUT", path, body)


def steps_of(api: ApiCaller) -> dict[str, dict[str, Any]]:
    response = api.get("/v1/onboarding")
    assert response.status_code == 200, response.json
    assert [s["step"] for s in response.json["steps"]] == STEPS
    return {s["step"]: s for s in response.json["steps"]}


@pytest.fixture
def sandbox(app: Flask, operator: Operator, live_url: str) -> TenantHandle:
    """A tenant in onboarding: a sandbox that takes itself live."""
    return make_tenant(app.test_client(), operator, status="onboarding")


def test_a_sandbox_tenant_goes_from_an_empty_checklist_to_live(sandbox: TenantHandle, operator: Operator) -> None:
    api = sandbox.api
    assert operator.api.get(f"/v1/tenants/{sandbox.id}").json["status"] == "onboarding"
    checklist = api.get("/v1/onboarding").json
    assert (checklist["status"], checklist["ready_to_launch"], checklist["launched_at"]) == ("onboarding", False, None)
    steps = steps_of(api)
    assert {name for name, step in steps.items() if step["done"]} == {"number_range"}
    block = operator.api.get(f"/v1/tenants/{sandbox.id}").json["number_range"]
    assert steps["number_range"]["details"] == block
    assert steps["brand"]["missing"] == [
        "display_name",
        "primary_color",
        "accent_color",
        "logo",
        "support_email or support_phone",
    ]
    assert steps["legal_profile"]["missing"] == ["legal_name", "address", "registration_number", "vat_id", "iban"]
    assert steps["market"]["missing"] == ["languages", "tax_rate"]
    assert steps["host_network"]["missing"] == ["agreement_id"]
    assert steps["billing"]["missing"] == ["invoice_series"]
    assert steps["offer"]["how"] == "POST /v1/offers, then POST /v1/offers/{offer_id}/publish"

    early = api.post("/v1/tenant/launch")
    assert (early.status_code, early.json["code"]) == (409, "launch_incomplete"), early.json
    assert set(early.json["errors"]) == set(STEPS) - {"number_range"}
    assert early.json["errors"]["market"] == ["Missing: languages; tax_rate.", "To do: PUT /v1/tenant/market."]

    assert put(api, "/v1/tenant/brand", BRAND).status_code == 200
    logo = png(4, 4)
    assert put_logo(api, logo, "image/png").status_code == 200
    assert put(api, "/v1/tenant/legal-profile", PROFILE).status_code == 200
    assert put(api, "/v1/tenant/market", MARKET).status_code == 200
    assert put(api, "/v1/tenant/host-network", {"agreement_id": "nag_sim_fr"}).status_code == 200
    assert put(api, "/v1/tenant/billing-settings", BILLING).status_code == 200
    assert steps_of(api)["offer"]["done"] is False
    published_offer(api)

    steps = steps_of(api)
    assert all(step["done"] and step["missing"] == [] for step in steps.values()), steps
    assert steps["host_network"]["details"] == {
        "agreement_id": "nag_sim_fr",
        "name": "Simulated host network (FR)",
        "kind": "simulated",
    }
    assert api.get("/v1/onboarding").json["ready_to_launch"] is True

    key = f"launch-{secrets.token_hex(4)}"
    launched = api.post("/v1/tenant/launch", key=key)
    assert launched.status_code == 200, launched.json
    assert (launched.json["id"], launched.json["status"]) == (sandbox.id, "active")
    assert launched.json["launched_at"] is not None
    retried = api.post("/v1/tenant/launch", key=key)
    assert (retried.status_code, retried.json) == (200, launched.json)
    assert retried.headers.get("Idempotent-Replayed") == "true"
    again = api.post("/v1/tenant/launch")
    assert (again.status_code, again.json["code"]) == (409, "tenant_already_live"), again.json

    assert operator.api.get(f"/v1/tenants/{sandbox.id}").json["status"] == "active"
    after = api.get("/v1/onboarding").json
    assert (after["status"], after["ready_to_launch"]) == ("active", False)
    assert after["launched_at"] == launched.json["launched_at"]
    events = api.get("/v1/events", limit=100).json["data"]
    assert [e["object_id"] for e in events if e["type"] == "tenant.launched"] == [sandbox.id]


def test_a_launch_with_steps_missing_names_only_those_and_changes_nothing(sandbox: TenantHandle) -> None:
    api = sandbox.api
    assert put(api, "/v1/tenant/brand", BRAND).status_code == 200
    assert put(api, "/v1/tenant/market", MARKET).status_code == 200
    published_offer(api)

    refused = api.post("/v1/tenant/launch")

    assert (refused.status_code, refused.json["code"]) == (409, "launch_incomplete")
    assert set(refused.json["errors"]) == {"brand", "legal_profile", "host_network", "billing"}
    assert refused.json["errors"]["brand"] == [
        "Missing: logo.",
        "To do: PUT /v1/tenant/brand, then PUT /v1/tenant/brand/logo with the image.",
    ]
    assert "brand, legal_profile, host_network, billing" in refused.json["detail"]
    assert api.get("/v1/onboarding").json["status"] == "onboarding"
    assert not [e for e in api.get("/v1/events", limit=100).json["data"] if e["type"] == "tenant.launched"]


def test_a_live_tenant_cannot_launch(tenant: TenantHandle) -> None:
    refused = tenant.api.post("/v1/tenant/launch")
    assert (refused.status_code, refused.json["code"]) == (409, "tenant_already_live")
    checklist = tenant.api.get("/v1/onboarding").json
    assert (checklist["status"], checklist["ready_to_launch"]) == ("active", False)


def test_the_brand_is_stored_and_its_logo_served_back(sandbox: TenantHandle, runtime: Runtime) -> None:
    api = sandbox.api
    assert api.get("/v1/tenant/brand").json["code"] == "brand_not_found"
    assert api.get("/v1/tenant/brand/logo").json["code"] == "logo_not_found"

    stored = put(api, "/v1/tenant/brand", BRAND)

    assert stored.status_code == 200, stored.json
    assert stored.json["primary_color"] == "#1f4fd1"
    assert stored.json["support_phone"] == "+33123456789"
    assert stored.json["logo_url"] is None
    logo = png(8, 8)
    uploaded = put_logo(api, logo, "image/png")
    assert uploaded.status_code == 200, uploaded.json
    assert uploaded.json["logo_content_type"] == "image/png"
    assert uploaded.json["logo_url"].endswith("/v1/tenant/brand/logo")
    served = api.get("/v1/tenant/brand/logo")
    assert (served.status_code, served.mimetype, served.data) == (200, "image/png", logo)
    keys = runtime.storage.list(f"tenants/{sandbox.id}/brand/")
    assert len(keys) == 1
    assert keys[0].startswith(f"tenants/{sandbox.id}/brand/logo-")
    assert keys[0].endswith(".png")
    # Setting the brand again keeps the logo.
    assert put(api, "/v1/tenant/brand", {**BRAND, "display_name": "Nimbus"}).json["logo_content_type"] == "image/png"
    assert api.get("/v1/tenant/brand").json["display_name"] == "Nimbus"

    webp = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0e\x00\x00\x00/\x00\x00\x00\x00\x07\x10\x11\xfd\x0fDD\xff\x03"
    assert put_logo(api, webp, "image/webp").status_code == 200
    served = api.get("/v1/tenant/brand/logo")
    assert (served.mimetype, served.data) == ("image/webp", webp)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"just some text, not an image", "image/png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/png"),
        (png(), "image/jpeg"),
        (png(), "application/octet-stream"),
        (b"", "image/png"),
    ],
    ids=["text", "svg", "svg-as-png", "png-as-jpeg", "octet-stream", "empty"],
)
def test_a_logo_that_is_not_the_image_it_claims_is_refused(
    sandbox: TenantHandle, data: bytes, content_type: str
) -> None:
    refused = put_logo(sandbox.api, data, content_type)
    assert (refused.status_code, refused.json["code"]) == (422, "logo_not_an_image"), refused.json
    assert "image/png, image/jpeg or image/webp" in refused.json["detail"]
    assert sandbox.api.get("/v1/tenant/brand/logo").status_code == 404


def test_a_logo_over_512_kib_is_refused(sandbox: TenantHandle) -> None:
    big = png(extra=b"\x00" * (512 * 1024))
    refused = put_logo(sandbox.api, big, "image/png")
    assert (refused.status_code, refused.json["code"]) == (413, "logo_too_large"), refused.json
    assert sandbox.api.get("/v1/tenant/brand/logo").status_code == 404
    just_right = png(extra=b"\x00" * (512 * 1024 - len(png()) - 12))
    assert len(just_right) == 512 * 1024
    assert put_logo(sandbox.api, just_right, "image/png").status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"primary_color": "blue"}, "primary_color"),
        ({"accent_color": "#f5a62"}, "accent_color"),
        ({"primary_color": "#12345g"}, "primary_color"),
        ({"support_url": "http://nimbus.example/help"}, "support_url"),
        ({"support_email": "not an address"}, "support_email"),
        ({"support_phone": "12"}, "support_phone"),
        ({"display_name": ""}, "display_name"),
    ],
)
def test_a_bad_brand_field_is_named_and_nothing_is_written(
    sandbox: TenantHandle, change: dict[str, Any], field: str
) -> None:
    refused = put(sandbox.api, "/v1/tenant/brand", {**BRAND, **change})
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == [field], refused.json
    assert sandbox.api.get("/v1/tenant/brand").status_code == 404


def test_the_market_is_stored_exactly_and_read_back(sandbox: TenantHandle) -> None:
    api = sandbox.api
    before = api.get("/v1/tenant/market").json
    assert before == {
        "country": "FR",
        "currency": "EUR",
        "timezone": "Europe/Paris",
        "languages": [],
        "default_language": None,
        "tax_rate": None,
        "standard_tax_rate": "20.00",
    }

    stored = put(
        api,
        "/v1/tenant/market",
        {
            "country": "FR",
            "currency": "CHF",
            "timezone": "Europe/Zurich",
            "languages": ["de-ch", "fr"],
            "tax_rate": "8.1",
        },
    )

    assert stored.status_code == 200, stored.json
    assert stored.json["currency"] == "CHF"
    assert stored.json["timezone"] == "Europe/Zurich"
    assert (stored.json["languages"], stored.json["default_language"]) == (["de-CH", "fr"], "de-CH")
    assert stored.json["tax_rate"] == "8.10"
    assert api.get("/v1/tenant/market").json == stored.json


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"timezone": "Europe/Atlantis"}, 422, "validation_failed", "timezone"),
        ({"languages": ["fr-FR", "xx-QQ-notatag"]}, 422, "invalid_language", "languages"),
        ({"languages": ["klingon"]}, 422, "invalid_language", "languages"),
        ({"languages": ["fr", "fr"]}, 422, "invalid_language", "languages"),
        ({"languages": []}, 422, "validation_failed", "languages"),
        ({"tax_rate": "100"}, 422, "validation_failed", "tax_rate"),
        ({"tax_rate": "-1"}, 422, "validation_failed", "tax_rate"),
        ({"tax_rate": "5.12345"}, 422, "invalid_tax_rate", "tax_rate"),
        ({"currency": "XYZ"}, 422, "validation_failed", "currency"),
        ({"country": "DE"}, 409, "country_locked", "country"),
    ],
)
def test_a_bad_market_is_refused_naming_the_field_and_nothing_is_written(
    sandbox: TenantHandle, change: dict[str, Any], status: int, code: str, field: str
) -> None:
    refused = put(sandbox.api, "/v1/tenant/market", {**MARKET, **change})
    assert (refused.status_code, refused.json["code"]) == (status, code), refused.json
    assert list(refused.json["errors"]) == [field], refused.json
    market = sandbox.api.get("/v1/tenant/market").json
    assert (market["languages"], market["tax_rate"]) == ([], None)


def test_the_currency_is_fixed_once_offers_exist_and_the_timezone_once_live(sandbox: TenantHandle) -> None:
    api = sandbox.api
    published_offer(api)
    refused = put(api, "/v1/tenant/market", {**MARKET, "currency": "GBP"})
    assert (refused.status_code, refused.json["code"]) == (409, "currency_locked"), refused.json
    assert put(api, "/v1/tenant/market", {**MARKET, "timezone": "Europe/London"}).status_code == 200

    live = {**MARKET, "timezone": "Europe/London"}
    for path, body in (
        ("/v1/tenant/brand", BRAND),
        ("/v1/tenant/legal-profile", PROFILE),
        ("/v1/tenant/host-network", {"agreement_id": "nag_sim_fr"}),
        ("/v1/tenant/billing-settings", BILLING),
    ):
        assert put(api, path, body).status_code == 200, path
    assert put_logo(api, png(), "image/png").status_code == 200
    assert api.post("/v1/tenant/launch").status_code == 200

    refused = put(api, "/v1/tenant/market", {**live, "timezone": "Europe/Paris"})
    assert (refused.status_code, refused.json["code"]) == (409, "timezone_locked"), refused.json
    assert put(api, "/v1/tenant/market", {**live, "tax_rate": "5.5"}).json["tax_rate"] == "5.50"


def test_a_tenant_chooses_a_host_network_of_its_country(sandbox: TenantHandle, operator: Operator) -> None:
    api = sandbox.api
    created = operator.api.post(
        "/v1/operator/network-agreements",
        {
            "name": "Telekom wholesale",
            "host_mno": "Telekom",
            "mcc": "262",
            "mnc": "01",
            "country": "DE",
            "kind": "live",
        },
    )
    assert created.status_code == 201, created.json
    german = created.json["id"]
    assert created.json["status"] == "active"
    everyone = operator.api.get("/v1/operator/network-agreements", country="DE").json["data"]
    assert german in [a["id"] for a in everyone]
    assert sandbox.api.get("/v1/operator/network-agreements").status_code == 403

    offered = [a["id"] for a in api.get("/v1/network-agreements").json["data"]]
    assert "nag_sim_fr" in offered
    assert german not in offered
    assert api.get("/v1/tenant/host-network").json["agreement_id"] is None

    unknown = put(api, "/v1/tenant/host-network", {"agreement_id": "nag_nothing_here"})
    assert (unknown.status_code, unknown.json["code"]) == (422, "unknown_network_agreement"), unknown.json
    assert list(unknown.json["errors"]) == ["agreement_id"]
    foreign = put(api, "/v1/tenant/host-network", {"agreement_id": german})
    assert (foreign.status_code, foreign.json["code"]) == (422, "network_agreement_unavailable"), foreign.json
    assert api.get("/v1/tenant/host-network").json["agreement_id"] is None

    chosen = put(api, "/v1/tenant/host-network", {"agreement_id": "nag_sim_fr"})
    assert chosen.status_code == 200, chosen.json
    assert chosen.json["agreement"]["kind"] == "simulated"
    assert chosen.json["lines_run_on"] == "simulated"
    assert "sandbox" in chosen.json["note"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BILLING, "invoice_series": "nim-"}, "invoice_series"),
        ({**BILLING, "invoice_series": "NIMBUS-2026"}, "invoice_series"),
        ({**BILLING, "invoice_series": ""}, "invoice_series"),
        ({**BILLING, "payment_terms_days": 121}, "payment_terms_days"),
        ({**BILLING, "payment_terms_days": -1}, "payment_terms_days"),
    ],
)
def test_bad_billing_settings_are_refused_naming_the_field(
    sandbox: TenantHandle, body: dict[str, Any], field: str
) -> None:
    refused = put(sandbox.api, "/v1/tenant/billing-settings", body)
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == [field]
    assert sandbox.api.get("/v1/tenant/billing-settings").json["invoice_series"] is None


def test_payment_terms_have_one_home_shown_by_the_legal_profile_too(sandbox: TenantHandle) -> None:
    api = sandbox.api
    assert api.get("/v1/tenant/billing-settings").json == {
        "payment_terms_days": 14,
        "invoice_series": None,
        "next_invoice_number_example": f"INV-{dt.datetime.now(dt.UTC).year}-000001",
    }
    assert put(api, "/v1/tenant/billing-settings", BILLING).status_code == 200
    # The legal profile shows the billing settings' terms, and a profile without terms leaves them be.
    assert put(api, "/v1/tenant/legal-profile", PROFILE).json["payment_terms_days"] == 30
    assert put(api, "/v1/tenant/legal-profile", {**PROFILE, "payment_terms_days": 45}).json["payment_terms_days"] == 45
    settings = api.get("/v1/tenant/billing-settings").json
    assert (settings["payment_terms_days"], settings["invoice_series"]) == (45, "NIM-")
    assert settings["next_invoice_number_example"].startswith("NIM-")


def test_invoices_use_the_tenants_series_terms_and_tax_rate(tenant: TenantHandle, runtime: Runtime) -> None:
    api = tenant.api
    due_at_once = {"payment_terms_days": 0, "invoice_series": "NIM-"}
    assert put(api, "/v1/tenant/billing-settings", due_at_once).status_code == 200
    assert put(api, "/v1/tenant/market", {**MARKET, "tax_rate": "5.5"}).status_code == 200
    offer = published_offer(api)
    buyer = customer(api)
    sub = active_subscription(api, buyer["id"], offer["id"])
    period, start = last_period()
    backdate_line(runtime, sub["id"], start)

    started = api.post("/v1/billing-runs", {"period": period})
    assert started.status_code == 202, started.json
    wait_for(
        lambda: api.get(f"/v1/billing-runs/{started.json['id']}").json["status"] == "completed",
        what="the billing run",
    )
    [invoice] = api.get("/v1/invoices", customer=buyer["id"]).json["data"]

    assert invoice["number"] == f"NIM-{period[:4]}-000001"
    assert invoice["subtotal"] == "20.00"
    assert (invoice["tax"], invoice["total"]) == ("1.10", "21.10")
    assert invoice["due_date"] == invoice["issued_at"][:10]


def test_an_operator_makes_a_tenant_live_or_a_sandbox_and_nothing_else(operator: Operator) -> None:
    body = {"name": "Odd", "slug": f"t-{secrets.token_hex(4)}", "country": "FR", "currency": "EUR"}
    refused = operator.api.post("/v1/tenants", {**body, "timezone": "Europe/Paris", "status": "suspended"})
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == ["status"]
    live = operator.api.post("/v1/tenants", {**body, "timezone": "Europe/Paris"})
    assert (live.status_code, live.json["status"], live.json["launched_at"]) == (201, "active", None)
