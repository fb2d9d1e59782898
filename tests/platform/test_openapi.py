"""The OpenAPI document, the offline docs page, and the health, readiness and metrics endpoints."""

from __future__ import annotations

import base64
import re
from typing import Any

from flask import Flask

from mvne.charging.online.front import ROUTES as NCHF_ROUTES
from mvne.infra.web.limits import rate_limits
from mvne.platform.auth import OPERATOR_SCOPES, SUBSCRIBER_SCOPES, TENANT_SCOPES
from tests.support.api import OFFER, ApiCaller, TenantHandle

# The documentation's own routes are not operations of the API, nor is embedded mode's local mailbox.
DOC_ROUTES = ("/v1/openapi.json", "/v1/docs", "/v1/dev/")
# Operations anyone may call without a token (`security: []`): signing up, logging in, joining a staff.
PUBLIC_OPERATIONS = {
    ("/v1/signup", "post"),
    ("/v1/signup/verify", "post"),
    ("/v1/signup/resend-verification", "post"),
    ("/v1/console/sessions", "post"),
    ("/v1/staff/invitations/accept", "post"),
    ("/v1/catalog", "get"),
}
# Served outside /v1 and documented too: how a client gets its token and checks it, how an app signs its
# subscribers in and revokes their tokens, and the server's metadata.
# Protocols served as their standards spell them, beside /v1: a 5G core's charging (3GPP TS 32.291).
PROTOCOL_ROUTES = ("/nchf-convergedcharging/",)
AUTH_ROUTES = (
    "/oauth/token",
    "/oauth/authorize",
    "/oauth/revoke",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
)


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


def component(document: dict[str, Any], node: dict[str, Any], section: str) -> dict[str, Any]:
    """A response or parameter, following its `$ref` into `components`."""
    if "$ref" in node:
        return dict(document["components"][section][node["$ref"].rsplit("/", 1)[-1]])
    return node


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def api_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, method, operation in operations(document) if path.startswith("/v1/")]


def problem_codes(document: dict[str, Any], operation: dict[str, Any], status: int) -> set[str]:
    """The `code`s an operation documents for a status; fails unless it is documented as problem+json."""
    assert str(status) in operation["responses"], f"no {status} documented"
    response = component(document, operation["responses"][str(status)], "responses")
    media = response.get("content", {}).get("application/problem+json")
    assert media, f"{status} is not application/problem+json: {response}"
    assert resolve(document, media["schema"])["properties"]["code"]["type"] == "string"
    examples = [example["value"] for example in media.get("examples", {}).values()]
    if "example" in media:
        examples.append(media["example"])
    assert examples, f"{status} has no example"
    for example in examples:
        assert example["status"] == status, example
        assert example["type"].endswith(":" + example["code"]), example
    return {example["code"] for example in examples}


def parameters_of(document: dict[str, Any], path: str, operation: dict[str, Any]) -> list[dict[str, Any]]:
    shared = document["paths"][path].get("parameters", [])
    return [component(document, parameter, "parameters") for parameter in (*shared, *operation.get("parameters", []))]


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
        documented_prefix = rule.rule.startswith(("/v1/", *PROTOCOL_ROUTES)) or rule.rule in AUTH_ROUTES
        if not documented_prefix or rule.rule.startswith(DOC_ROUTES):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}

    # Served beside the app, by a WSGI app of its own mounted at its base path.
    served |= {(re.sub(r"<([^>]+)>", r"{\1}", route), method.lower()) for route, method in NCHF_ROUTES}

    documented = {
        (path, method)
        for path, item in spec(api)["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }

    assert ("/v1/offers", "post") in served
    assert ("/oauth/token", "post") in served
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

    assert set(overage.get("properties", {})) == {
        "data_per_mb",
        "voice_per_minute",
        "sms_per_message",
        "mms_per_message",
    }, overage
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
    assets = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', html)
    assert any(re.search(r"/swagger-ui-bundle\.js(\?|$)", asset) for asset in assets), assets
    assert any(re.search(r"\.css(\?|$)", asset) for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/v1/docs/assets/"), asset
        assert api.client.get(asset).status_code == 200, asset
    assert "/v1/openapi.json" in html


def test_the_oauth2_flows_declare_their_urls_and_every_scope(api: ApiCaller) -> None:
    flows = spec(api)["components"]["securitySchemes"]["oauth2"]["flows"]

    clients = flows["clientCredentials"]
    assert clients["tokenUrl"] == "/oauth/token"
    assert set(clients["scopes"]) == set(TENANT_SCOPES) | set(OPERATOR_SCOPES)
    apps = flows["authorizationCode"]
    assert (apps["authorizationUrl"], apps["tokenUrl"]) == ("/oauth/authorize", "/oauth/token")
    assert set(apps["scopes"]) == set(SUBSCRIBER_SCOPES)
    for flow in (clients, apps):
        for scope, description in flow["scopes"].items():
            assert description, scope
            assert description != scope, scope


def test_every_protected_operation_requires_the_scope_its_view_checks(api: ApiCaller, app: Flask) -> None:
    document = spec(api)
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"].values()
    scopes = {scope for flow in flows for scope in flow["scopes"]}
    checked = 0

    for rule in app.url_map.iter_rules():
        scope = getattr(app.view_functions[rule.endpoint], "_mvne_scope", None)
        if scope is None:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            security = operation.get("security")
            assert security, (method, path)
            for requirement in security:
                assert requirement, (method, path, "an empty requirement would let anyone call it")
                for name, needed in requirement.items():
                    assert name in document["components"]["securitySchemes"], name
                    assert needed == [scope], (method, path, requirement)
            assert any("oauth2" in requirement for requirement in security), (method, path)
            assert scope in scopes
            checked += 1

    assert checked >= 30


def test_every_api_operation_documents_what_it_can_answer(api: ApiCaller) -> None:
    document = spec(api)
    missing: list[str] = []

    for path, method, operation in api_operations(document):
        where = f"{method.upper()} {path}"
        parameters = parameters_of(document, path, operation)
        public = (path, method) in PUBLIC_OPERATIONS
        try:
            if public:
                assert operation.get("security") == [], "a public operation documents `security: []`"
            else:
                assert operation.get("security"), "no security"
                assert "unauthenticated" in problem_codes(document, operation, 401)
                assert "insufficient_scope" in problem_codes(document, operation, 403)
            if "{" in path:
                assert any(p["in"] == "path" for p in parameters), "path parameters"
                problem_codes(document, operation, 404)
            has_body = "requestBody" in operation
            if has_body or any(p["in"] == "query" for p in parameters):
                assert "validation_failed" in problem_codes(document, operation, 422)
            if has_body:
                assert "malformed_body" in problem_codes(document, operation, 400)
                assert "payload_too_large" in problem_codes(document, operation, 413)
            if any(p["in"] == "query" and p["name"] == "starting_after" for p in parameters):
                assert "invalid_cursor" in problem_codes(document, operation, 400)
            if method == "post" and not public:
                keys = [p for p in parameters if p["in"] == "header" and p["name"].lower() == "idempotency-key"]
                assert keys, "no Idempotency-Key header"
                assert keys[0]["schema"]["type"] == "string"
                assert "idempotency_key_reused" in problem_codes(document, operation, 422)
            if method in ("post", "put", "patch", "delete"):
                assert "conflict" in problem_codes(document, operation, 409)
            assert_rate_limit_documented(document, operation)
        except AssertionError as error:
            missing.append(f"{where}: {error}")

    assert not missing, "\n".join(missing)


def test_only_the_operations_meant_for_anyone_need_no_token(api: ApiCaller, app: Flask) -> None:
    document = spec(api)
    open_to_anyone = {
        (path, method) for path, method, operation in api_operations(document) if not operation["security"]
    }

    assert open_to_anyone == PUBLIC_OPERATIONS
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            if (path, method.lower()) in PUBLIC_OPERATIONS:
                assert getattr(view, "_mvne_public", False), (method, path)
                assert getattr(view, "_mvne_scope", None) is None, (method, path)
    login = document["paths"]["/v1/console/sessions"]["post"]
    assert {"invalid_credentials", "totp_required", "invalid_totp"} <= problem_codes(document, login, 401)
    assert "login_locked" in problem_codes(document, login, 423)
    assert "retry-after" in {name.lower() for name in login["responses"]["423"]["headers"]}
    assert "weak_password" in problem_codes(document, document["paths"]["/v1/signup"]["post"], 422)


def test_operations_a_console_session_may_call_document_the_session(api: ApiCaller) -> None:
    document = spec(api)
    scheme = document["components"]["securitySchemes"]["consoleSession"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "cookie", "mvne_session")

    offers = document["paths"]["/v1/offers"]["post"]
    assert {"consoleSession": ["offers:write"]} in offers["security"]
    assert "csrf_failed" in problem_codes(document, offers, 403)
    assert "session_expired" in problem_codes(document, offers, 401)
    me = document["paths"]["/v1/console/me"]["get"]
    assert "caller_kind_refused" in problem_codes(document, me, 403)
    operators = document["paths"]["/v1/tenants"]["post"]
    assert not any("consoleSession" in requirement for requirement in operators["security"])


def assert_rate_limit_documented(document: dict[str, Any], operation: dict[str, Any]) -> None:
    """A 429 problem `rate_limited` with `Retry-After`, and the RateLimit fields on every success."""
    assert "rate_limited" in problem_codes(document, operation, 429)
    too_many = component(document, operation["responses"]["429"], "responses")
    headers = {name.lower(): component(document, header, "headers") for name, header in too_many["headers"].items()}
    assert headers["retry-after"]["schema"]["type"] == "integer", headers
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy", "ratelimit"):
        assert name in headers, f"429 without {name}"
    successes = [component(document, r, "responses") for s, r in operation["responses"].items() if str(s)[0] == "2"]
    assert successes, "no success documented"
    for success in successes:
        names = {name.lower() for name in success.get("headers", {})}
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= names, f"success without {names}"


def test_every_rate_limited_operation_documents_its_429_and_nothing_else_does(api: ApiCaller, app: Flask) -> None:
    document = spec(api)
    state = rate_limits(app)
    missing: list[str] = []
    limited = 0

    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if path not in document["paths"]:
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            where = f"{method} {path}"
            try:
                if state.is_limited(rule.endpoint):
                    limited += 1
                    assert_rate_limit_documented(document, operation)
                else:
                    assert "429" not in operation["responses"], "documents a limit that is not enforced"
            except AssertionError as error:
                missing.append(f"{where}: {error}")

    assert not missing, "\n".join(missing)
    assert limited >= 30
    assert state.is_limited("issue_token")
    assert not state.is_limited("api-docs.openapi_json")
    token = document["paths"]["/oauth/token"]["post"]["responses"]["429"]
    assert "per client id and per address" in token["description"]


def assert_example_fits(document: dict[str, Any], schema: dict[str, Any], example: Any, where: str) -> None:
    """The example has every required field and no field the schema does not know, at every level."""
    schema = resolve(document, schema)
    if isinstance(example, dict) and "properties" in schema:
        properties = schema["properties"]
        assert set(schema.get("required", ())) <= set(example), (where, sorted(example))
        assert set(example) <= set(properties), (where, sorted(set(example) - set(properties)))
        for name, value in example.items():
            assert_example_fits(document, properties[name], value, f"{where}.{name}")
    elif isinstance(example, list) and "items" in schema:
        for index, item in enumerate(example):
            assert_example_fits(document, schema["items"], item, f"{where}[{index}]")


def test_every_request_body_has_an_example_that_fits_its_schema(api: ApiCaller) -> None:
    document = spec(api)
    bodies = 0

    for path, method, operation in operations(document):
        for content_type, media in operation.get("requestBody", {}).get("content", {}).items():
            where = f"{method.upper()} {path} {content_type}"
            examples = [media["example"]] if "example" in media else []
            examples += [example["value"] for example in media.get("examples", {}).values()]
            assert examples, f"{where}: no example"
            for example in examples:
                assert_example_fits(document, media["schema"], example, where)
            bodies += 1

    assert bodies >= 9


def test_domain_problems_are_documented_on_the_operations_that_raise_them(api: ApiCaller) -> None:
    paths = spec(api)["paths"]
    document = spec(api)

    assert "offer_code_taken" in problem_codes(document, paths["/v1/offers"]["post"], 409)
    assert "offer_not_found" in problem_codes(document, paths["/v1/offers/{offer_id}"]["get"], 404)
    assert "offer_not_publishable" in problem_codes(document, paths["/v1/offers/{offer_id}/publish"]["post"], 409)
    assert "customer_email_taken" in problem_codes(document, paths["/v1/customers"]["post"], 409)
    assert "tenant_slug_taken" in problem_codes(document, paths["/v1/tenants"]["post"], 409)
    assert "billing_run_in_progress" in problem_codes(document, paths["/v1/billing-runs"]["post"], 409)
    subscription = paths["/v1/subscriptions"]["post"]
    assert {"customer_not_found", "offer_not_found"} <= problem_codes(document, subscription, 404)
    assert "offer_not_published" in problem_codes(document, subscription, 409)


def test_the_answers_of_the_api_are_among_the_documented_ones(api: ApiCaller, tenant: TenantHandle) -> None:
    document = spec(api)
    offers = document["paths"]["/v1/offers"]
    offer = {**OFFER, "code": "DOCS-1"}
    assert tenant.api.post("/v1/offers", offer).status_code == 201

    again = tenant.api.post("/v1/offers", offer)
    unknown = tenant.api.get("/v1/offers/off_01M8NHTM21YRHT2QG60D9HJAWC")
    anonymous = api.get("/v1/offers")

    assert again.status_code == 409
    assert again.json["code"] in problem_codes(document, offers["post"], 409)
    assert unknown.status_code == 404
    assert unknown.json["code"] in problem_codes(document, document["paths"]["/v1/offers/{offer_id}"]["get"], 404)
    assert anonymous.status_code == 401
    assert anonymous.json["code"] in problem_codes(document, offers["get"], 401)
    bad_limit = tenant.api.get("/v1/offers", limit=0)
    assert bad_limit.status_code == 422
    assert bad_limit.json["code"] in problem_codes(document, offers["get"], 422)


def test_the_token_endpoint_and_the_key_set_are_documented(api: ApiCaller) -> None:
    document = spec(api)

    token = document["paths"]["/oauth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]
    request = resolve(document, form["schema"])
    assert request["properties"]["grant_type"]["enum"] == ["client_credentials", "authorization_code", "refresh_token"]
    assert {"client_id", "client_secret", "scope", "code", "code_verifier", "refresh_token"} <= set(
        request["properties"]
    )
    answer = resolve(document, token["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"access_token", "token_type", "expires_in", "scope"} <= set(answer["properties"])
    for status in ("400", "401"):
        error = resolve(document, token["responses"][status]["content"]["application/json"]["schema"])
        assert "invalid_client" in error["properties"]["error"]["enum"]
    assert {} in token["security"], "credentials may come in the form instead of HTTP Basic"
    jwks = document["paths"]["/.well-known/jwks.json"]["get"]
    assert "keys" in resolve(document, jwks["responses"]["200"]["content"]["application/json"]["schema"])["properties"]


def test_the_token_endpoint_answers_as_documented(api: ApiCaller, tenant: TenantHandle) -> None:
    document = spec(api)
    token = document["paths"]["/oauth/token"]["post"]
    errors = resolve(document, {"$ref": "#/components/schemas/OAuthError"})["properties"]["error"]["enum"]
    basic = base64.b64encode(f"{tenant.client_id}:{tenant.secret}".encode()).decode()
    wrong = base64.b64encode(f"{tenant.client_id}:not-the-secret".encode()).decode()

    granted = api.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "offers:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    refused = api.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {wrong}"}
    )
    unsupported = api.client.post(
        "/oauth/token", data={"grant_type": "password"}, headers={"Authorization": f"Basic {basic}"}
    )

    assert granted.status_code == 200, granted.json
    properties = resolve(document, token["responses"]["200"]["content"]["application/json"]["schema"])["properties"]
    assert set(granted.json) <= set(properties)
    assert granted.json["token_type"] in properties["token_type"]["enum"]
    assert granted.json["scope"] == "offers:read"
    for response in (refused, unsupported):
        assert str(response.status_code) in token["responses"], (response.status_code, response.json)
        assert response.json["error"] in errors, response.json
    assert refused.json["error"] == "invalid_client"
    assert unsupported.json["error"] == "unsupported_grant_type"


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
