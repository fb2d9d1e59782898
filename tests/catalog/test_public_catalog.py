"""The public catalogue: what a tenant's apps may sell, readable without a token, cached and tagged."""

from __future__ import annotations

from typing import Any

from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, TenantHandle, published_offer

ADDON = {
    **OFFER,
    "code": "ROAM-1GB",
    "name": "1 GB in the EU",
    "kind": "addon",
    "price": "5.00",
    "allowances": {},
    "zone_allowances": [{"service": "data", "zone": "eu", "amount": 1000}],
    "validity_days": 30,
    "tax_category": "zero",
    "public": True,
}


def test_only_published_public_offers_show_with_prices_with_and_without_tax(
    api: ApiCaller, tenant: TenantHandle
) -> None:
    plan = published_offer(tenant.api, code="PUB", public=True, description="For everyone")
    addon = published_offer(tenant.api, **ADDON)
    published_offer(tenant.api, code="PRIVATE")
    draft = tenant.api.post("/v1/offers", {**OFFER, "code": "DRAFT", "public": True})
    assert draft.status_code == 201, draft.json
    retired = published_offer(tenant.api, code="GONE", public=True)
    assert tenant.api.post(f"/v1/offers/{retired['id']}/retire").status_code == 200

    anonymous = api.with_token(None)
    response = anonymous.get("/v1/catalog", tenant=tenant.id)

    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "public, max-age=60"
    shown = {o["code"]: o for o in response.json["offers"]}
    assert set(shown) == {"PUB", "ROAM-1GB"}
    assert (shown["PUB"]["id"], shown["PUB"]["description"]) == (plan["id"], "For everyone")
    assert (shown["PUB"]["price_excluding_tax"], shown["PUB"]["price_including_tax"]) == ("20.00", "24.00")
    assert shown["PUB"]["tax_rate"] == "0.20"
    assert (shown["ROAM-1GB"]["id"], shown["ROAM-1GB"]["price_including_tax"]) == (addon["id"], "5.00")
    assert shown["ROAM-1GB"]["allowances"][-1]["zone"] == "eu"

    etag = response.headers["ETag"]
    again = anonymous.client.get(f"/v1/catalog?tenant={tenant.id}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    published_offer(tenant.api, code="NEW", public=True)
    changed = anonymous.client.get(f"/v1/catalog?tenant={tenant.id}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_an_app_names_its_tenant_and_unknown_ones_are_not_found(api: ApiCaller, tenant: TenantHandle) -> None:
    published_offer(tenant.api, code="PUB", public=True)
    app: dict[str, Any] = tenant.api.post(
        "/v1/apps", {"name": "Brand app", "redirect_uris": ["https://app.example/cb"]}
    ).json
    anonymous = api.with_token(None)

    by_app = anonymous.get("/v1/catalog", app=app["client_id"])
    assert by_app.status_code == 200, by_app.json
    assert [o["code"] for o in by_app.json["offers"]] == ["PUB"]

    assert_problem(anonymous.get("/v1/catalog", tenant="ten_01J00000000000000000000000"), 404, "tenant_not_found")
    assert_problem(anonymous.get("/v1/catalog", app="cli_unknown"), 404, "tenant_not_found")
    assert_problem(anonymous.get("/v1/catalog", app=tenant.client_id), 404, "tenant_not_found")
    assert anonymous.get("/v1/catalog", tenant="x\u0000").status_code == 422
