"""A tenant's legal profile through the API: checked identifiers, refusals that name the field, one tenant's alone."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.support.api import Operator, TenantHandle, make_tenant

PROFILE: dict[str, Any] = {
    "legal_name": "Nova Mobile",
    "legal_form": "SAS",
    "address": {"line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
    "registration_number": "732 829 320",
    "rcs_city": "Paris",
    "share_capital": "10000.00",
    "vat_id": "FR 44 732 829 320",
    "iban": "FR14 2004 1010 0505 0001 3M02 606",
    "bic": "PSSTFRPPPAR",
    "support_email": "facturation@nova.example",
    "support_phone": "01 23 45 67 89",
}


def put_profile(tenant: TenantHandle, body: dict[str, Any]) -> Any:
    return tenant.api.request("PUT", "/v1/tenant/legal-profile", body)


def test_a_profile_is_stored_checked_and_compact_and_read_back(tenant: TenantHandle) -> None:
    assert tenant.api.get("/v1/tenant/legal-profile").json["code"] == "legal_profile_not_found"

    stored = put_profile(tenant, PROFILE)

    assert stored.status_code == 200, stored.json
    read = tenant.api.get("/v1/tenant/legal-profile")
    assert read.status_code == 200, read.json
    assert read.json == stored.json
    profile = read.json
    assert profile["legal_name"] == "Nova Mobile"
    assert profile["legal_form"] == "SAS"
    assert profile["address"]["city"] == "Paris"
    assert profile["registration_number"] == "732829320"
    assert profile["vat_id"] == "FR44732829320"
    assert profile["iban"] == "FR1420041010050500013M02606"
    assert profile["bic"] == "PSSTFRPPPAR"
    assert profile["share_capital"] == "10000.00"
    assert profile["support_phone"] == "+33123456789"
    # Defaults: French invoices for a French company, payment within 14 days.
    assert (profile["invoice_locale"], profile["payment_terms_days"]) == ("fr_FR", 14)
    events = tenant.api.get("/v1/events", limit=100).json["data"]
    assert [e["data"]["legal_name"] for e in events if e["type"] == "tenant.legal_profile_updated"] == ["Nova Mobile"]


def test_a_profile_is_replaced_as_a_whole(tenant: TenantHandle) -> None:
    assert put_profile(tenant, PROFILE).status_code == 200
    replaced = put_profile(
        tenant,
        {**PROFILE, "legal_name": "Nova Telecom", "registration_number": "73282932000074", "invoice_locale": "en-GB"},
    )
    assert replaced.status_code == 200, replaced.json
    profile = tenant.api.get("/v1/tenant/legal-profile").json
    assert (profile["legal_name"], profile["registration_number"], profile["invoice_locale"]) == (
        "Nova Telecom",
        "73282932000074",
        "en_GB",
    )
    updates = [
        e for e in tenant.api.get("/v1/events", limit=100).json["data"] if e["type"] == "tenant.legal_profile_updated"
    ]
    assert [e["data"]["created"] for e in updates] == [True, False]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vat_id", "FR12345678901", "The VAT id FR12345678901 has a wrong check digit."),
        ("vat_id", "DE136695976", "does not start with FR"),
        ("vat_id", "FR4473282932", "wrong number of characters"),
        ("registration_number", "732829321", "The registration number 732829321 has a wrong check digit."),
        ("registration_number", "73282932000075", "wrong check digit"),
        ("iban", "FR1520041010050500013M02606", "The IBAN FR1520041010050500013M02606 has a wrong check digit."),
        ("bic", "PSST12PPPAR", "The BIC PSST12PPPAR"),
        ("invoice_locale", "xx_QQ", "The locale 'xx_QQ' is unknown"),
        ("support_phone", "+33 1 23", "The phone number +33 1 23 is not valid"),
    ],
)
def test_each_wrong_identifier_is_refused_with_its_field_and_nothing_is_written(
    tenant: TenantHandle, field: str, value: str, message: str
) -> None:
    assert put_profile(tenant, PROFILE).status_code == 200

    refused = put_profile(tenant, {**PROFILE, "legal_name": "Changed", field: value})

    assert refused.status_code == 422, refused.json
    assert refused.json["code"] == "invalid_identifier"
    assert set(refused.json["errors"]) == {field}, refused.json
    assert message in refused.json["errors"][field][0], refused.json
    assert tenant.api.get("/v1/tenant/legal-profile").json["legal_name"] == "Nova Mobile"


def test_an_rcs_city_is_refused_outside_france(tenant: TenantHandle) -> None:
    belgian = {
        **PROFILE,
        "address": {"line1": "Rue Royale 1", "postal_code": "1000", "city": "Bruxelles", "country": "BE"},
        "vat_id": "BE0403170701",
        "registration_number": "0403.170.701",
        "support_phone": "+32 2 511 22 33",
    }
    refused = put_profile(tenant, belgian)
    assert refused.status_code == 422, refused.json
    assert set(refused.json["errors"]) == {"rcs_city"}
    stored = put_profile(tenant, {k: v for k, v in belgian.items() if k != "rcs_city"})
    assert stored.status_code == 200, stored.json
    assert (stored.json["vat_id"], stored.json["invoice_locale"]) == ("BE0403170701", "en_GB")


def test_several_wrong_identifiers_are_named_together(tenant: TenantHandle) -> None:
    refused = put_profile(tenant, {**PROFILE, "vat_id": "FR12345678901", "iban": "FR00", "bic": "X"})
    assert refused.status_code == 422, refused.json
    assert set(refused.json["errors"]) == {"vat_id", "iban", "bic"}
    assert tenant.api.get("/v1/tenant/legal-profile").status_code == 404


def test_a_french_company_must_give_its_siren(tenant: TenantHandle) -> None:
    body = {k: v for k, v in PROFILE.items() if k != "registration_number"}
    refused = put_profile(tenant, body)
    assert refused.status_code == 422, refused.json
    assert "SIREN" in refused.json["errors"]["registration_number"][0]


def test_a_company_outside_france_keeps_its_own_numbers_and_writes_english_invoices(tenant: TenantHandle) -> None:
    body = {
        "legal_name": "Tide Mobile Ltd",
        "address": {"line1": "1 King Street", "postal_code": "EC2V 8AU", "city": "London", "country": "GB"},
        "registration_number": "12345678",
        "vat_id": "GB 123 4567 89",
        "iban": "GB82WEST12345698765432",
        "bic": "NWBKGB2L",
        "payment_terms_days": 30,
    }
    stored = put_profile(tenant, body)
    assert stored.status_code == 200, stored.json
    assert (stored.json["registration_number"], stored.json["vat_id"]) == ("12345678", "GB123456789")
    assert (stored.json["invoice_locale"], stored.json["payment_terms_days"]) == ("en_GB", 30)


def test_another_tenant_cannot_read_or_change_the_profile(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    assert put_profile(tenant, PROFILE).status_code == 200

    seen = other_tenant.api.get("/v1/tenant/legal-profile")
    assert (seen.status_code, seen.json["code"]) == (404, "legal_profile_not_found")
    assert "Nova" not in seen.get_data(as_text=True)

    # Its PUT makes its own profile; the first tenant's stays as it was.
    own = put_profile(other_tenant, {**PROFILE, "legal_name": "Other Brand"})
    assert own.status_code == 200, own.json
    assert other_tenant.api.get("/v1/tenant/legal-profile").json["legal_name"] == "Other Brand"
    assert tenant.api.get("/v1/tenant/legal-profile").json["legal_name"] == "Nova Mobile"


def test_the_profile_needs_its_scopes(app: Flask, operator: Operator, live_url: str) -> None:
    reader = make_tenant(app.test_client(), operator, scopes=("tenant:read",))
    refused = reader.api.request("PUT", "/v1/tenant/legal-profile", PROFILE)
    assert (refused.status_code, refused.json["code"]) == (403, "insufficient_scope")
    blind = make_tenant(app.test_client(), operator, scopes=("customers:read",))
    assert blind.api.get("/v1/tenant/legal-profile").status_code == 403


def test_a_business_customer_carries_a_checked_vat_id(tenant: TenantHandle) -> None:
    address = {"line1": "8 avenue Victor Hugo", "postal_code": "69002", "city": "Lyon", "country": "FR"}
    created = tenant.api.post(
        "/v1/customers",
        {"name": "Atelier Martin", "email": "compta@martin.example", "address": address, "vat_id": "fr44 732829320"},
    )
    assert created.status_code == 201, created.json
    assert created.json["vat_id"] == "FR44732829320"
    assert tenant.api.get(f"/v1/customers/{created.json['id']}").json["vat_id"] == "FR44732829320"

    refused = tenant.api.post(
        "/v1/customers",
        {"name": "Atelier Faux", "email": "compta@faux.example", "address": address, "vat_id": "FR12345678901"},
    )
    assert refused.status_code == 422, refused.json
    assert refused.json["errors"] == {"vat_id": ["The VAT id FR12345678901 has a wrong check digit."]}
    emails = [c["email"] for c in tenant.api.get("/v1/customers", limit=100).json["data"]]
    assert emails == ["compta@martin.example"]
