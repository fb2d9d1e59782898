"""The OpenAPI document, the offline docs page, and the health, readiness and metrics endpoints."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from tests.support.api import ApiCaller

# The documentation's own routes are not operations of the API.
DOC_ROUTES = ("/v1/openapi.json", "/v1/docs")


def spec(api: ApiCaller) -> dict[str, Any]:
    response = api.get("/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json
    return document


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` (also one wrapped in `anyOf`/`allOf` with null) to the schema it names."""
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in node:
            refs = [part for part in node[combinator] if "$ref" in part]
            if len(refs) == 1:
                node = refs[0]
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return resolve(document, document["components"]["schemas"][name])
    return node


def assert_decimal_string(field: dict[str, Any]) -> None:
    types = field.get("type")
    assert types == "string" or (isinstance(types, list) and "string" in types), field
    assert field.get("format") == "decimal", field


def test_the_document_is_openapi_3_1(api: ApiCaller) -> None:
    document = spec(api)

    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    assert document["paths"]


def test_every_v1_route_of_the_app_is_documented_and_nothing_else(api: ApiCaller, app: Flask) -> None:
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.rule.startswith(DOC_ROUTES):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}

    documented = {
        (path, method)
        for path, item in spec(api)["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }

    assert ("/v1/offers", "post") in served
    assert documented == served


def test_money_fields_are_documented_as_decimal_strings(api: ApiCaller) -> None:
    schemas = spec(api)["components"]["schemas"]

    for schema, field in [
        ("Offer", "price"),
        ("OfferCreate", "price"),
        ("OveragePrices", "data_per_mb"),
        ("Invoice", "subtotal"),
        ("Invoice", "tax"),
        ("Invoice", "total"),
        ("InvoiceLine", "amount"),
    ]:
        assert_decimal_string(schemas[schema]["properties"][field])


def test_an_offers_overage_prices_are_documented_as_decimal_strings(api: ApiCaller) -> None:
    document = spec(api)
    offer = document["components"]["schemas"]["Offer"]["properties"]

    overage = resolve(document, offer["overage"])

    assert set(overage.get("properties", {})) == {"data_per_mb", "voice_per_minute", "sms_per_message"}, overage
    for field in overage["properties"].values():
        assert_decimal_string(field)


def test_the_api_is_secured_by_a_bearer_token(api: ApiCaller) -> None:
    document = spec(api)

    bearer = [
        name
        for name, scheme in document["components"]["securitySchemes"].items()
        if scheme.get("type") == "http" and scheme.get("scheme") == "bearer"
    ]
    assert bearer
    assert any(set(requirement) & set(bearer) for requirement in document["security"])


def test_documented_errors_have_the_problem_json_shape_the_api_sends(api: ApiCaller) -> None:
    document = spec(api)
    post_offer = document["paths"]["/v1/offers"]["post"]["responses"]

    for status in ("422", "default"):
        response = post_offer[status]
        if "$ref" in response:
            response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        assert "application/problem+json" in response["content"], response
        problem = resolve(document, response["content"]["application/problem+json"]["schema"])
        properties = problem["properties"]
        assert {"type", "title", "status", "detail", "code"} <= set(properties), problem
        assert properties["code"]["type"] == "string"
        assert properties["status"]["type"] == "integer"


def test_the_docs_page_loads_swagger_ui_from_our_own_server(api: ApiCaller) -> None:
    page = api.get("/v1/docs")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), assets
    assert any(asset.endswith(".css") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/v1/docs/assets/"), asset
        assert api.get(asset).status_code == 200, asset
    assert "/v1/openapi.json" in html


def test_healthz_answers_ok(api: ApiCaller) -> None:
    response = api.get("/healthz")

    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_readyz_checks_the_database_the_broker_and_the_storage(api: ApiCaller) -> None:
    response = api.get("/readyz")

    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}


def test_metrics_count_http_requests_by_route(api: ApiCaller) -> None:
    assert api.get("/healthz").status_code == 200

    response = api.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    healthz = re.search(r'^mvne_http_requests_total\{([^}]*route="/healthz"[^}]*)\} (\S+)$', text, re.MULTILINE)
    assert healthz, text[:2000]
    assert 'status="200"' in healthz.group(1)
    assert float(healthz.group(2)) >= 1
