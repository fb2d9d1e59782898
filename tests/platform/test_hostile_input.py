"""Hostile input gets a 4xx problem naming what is wrong, never a 500, and the document says what is accepted.

Each case here was once a 500, a silent truncation, or a document promising what the API refused.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify
from hypothesis import given, settings
from hypothesis import strategies as st
from waitress.server import create_server

from mvne.infra.settings import Settings
from mvne.infra.web.guard import (
    _forbidden_strings,
    _scan_nesting,
    json_nesting_exceeds,
    may_hold_forbidden_strings,
    register_guard,
)
from mvne.infra.web.problems import register_error_handlers
from mvne.platform.gunicorn_process import gunicorn_server
from mvne.platform.server_errors import use_problem_errors
from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, Operator, TenantHandle, customer, published_offer

ADDRESS = {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"}


def raw_post(api: ApiCaller, path: str, text: str) -> Any:
    """POST a JSON text as is (json.dumps would escape what the test wants to send raw)."""
    return api.client.post(path, data=text.encode("utf-8"), headers=api.headers({"Content-Type": "application/json"}))


def customer_text(name_literal: str) -> str:
    """A customer body as JSON text, its name given as a JSON string literal written out by hand."""
    return '{"name": ' + name_literal + ', "email": "ada@example.com", "address": ' + json.dumps(ADDRESS) + "}"


def usage_record(**changes: Any) -> dict[str, Any]:
    record = {
        "record_id": "r-1",
        "msisdn": "+33612345678",
        "service": "data",
        "started_at": "2025-01-31T10:00:00Z",
        "volume": 1024,
    }
    record.update(changes)
    return {key: value for key, value in record.items() if value is not ...}


def document(api: ApiCaller) -> dict[str, Any]:
    response = api.get("/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json)


def component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(doc["components"]["schemas"][name])


# --- NUL bytes and lone surrogates -------------------------------------------------------------------


def test_a_nul_in_a_body_string_is_a_422_naming_the_field(tenant: TenantHandle) -> None:
    response = tenant.api.post(
        "/v1/customers", {"name": "Ada\x00Lovelace", "email": "ada@example.com", "address": ADDRESS}
    )

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"name"}
    assert "NUL" in body["errors"]["name"][0]


def test_a_nul_deep_in_a_body_names_the_nested_field(tenant: TenantHandle) -> None:
    response = tenant.api.post("/v1/usage-records", {"records": [usage_record(), usage_record(record_id="r\x00")]})

    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == {"records": {"1": {"record_id": ["Must not contain NUL characters."]}}}


def test_a_nul_in_a_query_parameter_is_a_422_naming_the_parameter(tenant: TenantHandle) -> None:
    response = tenant.api.client.get("/v1/subscriptions?status=act%00ive", headers=tenant.api.headers())

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"status"}


def test_a_nul_in_a_cursor_is_a_client_error_problem(tenant: TenantHandle) -> None:
    response = tenant.api.client.get("/v1/customers?starting_after=%00", headers=tenant.api.headers())

    assert response.status_code in (400, 422), response.get_data(as_text=True)
    body = assert_problem(response, response.status_code, response.json["code"])
    assert "starting_after" in body["errors"]


def test_a_nul_in_a_path_parameter_is_a_422_naming_it(tenant: TenantHandle) -> None:
    response = tenant.api.client.get("/v1/offers/off_%00", headers=tenant.api.headers())

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"offer_id"}


def test_a_lone_surrogate_in_json_is_a_422_naming_the_field(tenant: TenantHandle) -> None:
    text = customer_text('"Ada \\ud800"')

    body = assert_problem(raw_post(tenant.api, "/v1/customers", text), 422, "validation_failed")

    assert set(body["errors"]) == {"name"}
    assert "surrogate" in body["errors"]["name"][0]


def test_a_lone_surrogate_in_a_field_name_is_refused_too(tenant: TenantHandle) -> None:
    text = '{"\\udfff": 1, ' + customer_text('"Ada"')[1:]

    body = assert_problem(raw_post(tenant.api, "/v1/customers", text), 422, "validation_failed")

    assert body["errors"] == {"\\udfff": ["Field names must not contain unpaired surrogates (invalid Unicode)."]}


def test_a_paired_surrogate_is_an_ordinary_character(tenant: TenantHandle) -> None:
    text = customer_text('"Ada \\ud83d\\ude00"')

    response = raw_post(tenant.api, "/v1/customers", text)

    assert response.status_code == 201, response.json
    assert response.json["name"] == "Ada \U0001f600"


def test_a_nul_in_the_token_request_form_is_an_oauth_invalid_request(app: Flask, tenant: TenantHandle) -> None:
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": tenant.client_id + "\x00", "client_secret": "x"},
    )

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "client_id" in response.json["error_description"]


# --- sizes and depth --------------------------------------------------------------------------------


def test_json_nested_5000_deep_is_a_422_json_too_deep(tenant: TenantHandle) -> None:
    text = "[" * 5000 + "]" * 5000

    body = assert_problem(raw_post(tenant.api, "/v1/customers", text), 422, "json_too_deep")

    assert "_body" in body["errors"]


def test_deep_json_inside_an_object_field_is_refused_the_same_way(tenant: TenantHandle) -> None:
    text = '{"records": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}"

    assert_problem(raw_post(tenant.api, "/v1/usage-records", text), 422, "json_too_deep")


def test_brackets_inside_strings_do_not_count_as_depth(tenant: TenantHandle) -> None:
    text = customer_text('"' + "[{" * 60 + '\\"' + "}]" * 30 + '"')

    response = raw_post(tenant.api, "/v1/customers", text)

    assert response.status_code == 201, response.json


def test_the_depth_scan_counts_what_a_parser_would() -> None:
    assert json_nesting_exceeds(b"[[[]]]", 2)
    assert not json_nesting_exceeds(b"[[[]]]", 3)
    assert not json_nesting_exceeds(b'["[[[[", {"k": "]]]{{{"}]', 2)
    assert json_nesting_exceeds(b'[{"k\\"": [[1]]}]', 3)
    assert not json_nesting_exceeds(b'[{"\\\\": [1]}, [2], [3], [4], [5]]', 3)


# Text with what the guard looks for: NUL, surrogate halves (paired or not), quotes, backslashes, brackets.
_TRICKY_TEXT = st.lists(  # st.text would leave the surrogate halves out
    st.one_of(
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d", "\ude00", '"', "\\", "[", "]", "{", "}", "u"]),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
).map("".join)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TRICKY_TEXT, children, max_size=4),
    max_leaves=30,
)


def _encodings(value: Any) -> list[bytes]:
    """The ways a client may send `value`: escaped ASCII, raw UTF-8 (lone surrogates written raw), UTF-16."""
    raw = json.dumps(value, ensure_ascii=False)
    return [
        json.dumps(value).encode("ascii"),
        raw.encode("utf-8", "surrogatepass"),
        raw.encode("utf-16", "surrogatepass"),
    ]


@settings(max_examples=300, deadline=None)
@given(value=_JSON_VALUES, limit=st.integers(min_value=0, max_value=6))
def test_the_depth_check_agrees_with_the_byte_by_byte_scan(value: Any, limit: int) -> None:
    data = json.dumps(value).encode("ascii")

    assert json_nesting_exceeds(data, limit) == _scan_nesting(data, limit)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from('[]{}"\\ab'), max_size=30), limit=st.integers(min_value=0, max_value=4))
def test_the_depth_check_agrees_with_the_scan_on_text_that_is_not_json(text: str, limit: int) -> None:
    data = text.encode("ascii")

    assert json_nesting_exceeds(data, limit) == _scan_nesting(data, limit)


@settings(max_examples=300, deadline=None)
@given(value=_JSON_VALUES)
def test_a_body_whose_strings_hold_nul_or_a_lone_surrogate_is_always_looked_at(value: Any) -> None:
    for data in _encodings(value):
        parsed = json.loads(data)
        if list(_forbidden_strings(parsed)):
            assert may_hold_forbidden_strings(data), data


def test_a_body_of_plain_text_needs_no_walk_and_any_escaped_surrogate_gets_one() -> None:
    assert not may_hold_forbidden_strings(json.dumps({"name": "Ada é", "list": ["\\n", "\t"]}).encode())
    assert not may_hold_forbidden_strings(json.dumps({"name": "Ada 😀"}, ensure_ascii=False).encode())
    # Escaped, even a pair is looked at: telling a pair from a lone half preceded by an escaped backslash
    # would take a parser.
    assert may_hold_forbidden_strings(json.dumps({"name": "Ada 😀"}).encode())
    assert may_hold_forbidden_strings(b'{"a": "\\u0000"}')
    assert may_hold_forbidden_strings(b'{"a": "\\uDA00"}')


def test_a_body_over_the_limit_is_a_413_problem(tenant: TenantHandle, settings: Settings) -> None:
    text = '{"name": "' + "a" * settings.max_body_bytes + '"}'

    assert_problem(raw_post(tenant.api, "/v1/customers", text), 413, "payload_too_large")


@pytest.fixture
def small_app() -> Flask:
    """An app with only the guard and tiny bounds, echoing the JSON it was sent."""
    app = Flask("guarded")
    register_error_handlers(app)
    register_guard(app, max_body_bytes=1024, max_json_depth=3)

    @app.post("/echo")
    def echo() -> Any:
        from flask import request

        return jsonify(request.get_json())

    return app


def test_the_guard_takes_its_bounds_from_settings(small_app: Flask) -> None:
    client = small_app.test_client()

    assert client.post("/echo", json={"a": [[1]]}).status_code == 200
    assert_problem(client.post("/echo", json={"a": [[[1]]]}), 422, "json_too_deep")
    assert_problem(client.post("/echo", json={"a": "x" * 1100}), 413, "payload_too_large")


def test_a_body_without_a_length_is_cut_at_the_limit(small_app: Flask) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(50):
            yield b"x" * 100
        yield b'"}'

    with live_wsgi(small_app) as base:
        response = httpx.post(f"{base}/echo", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"


def test_an_integer_too_long_to_convert_is_a_malformed_body_not_a_500(tenant: TenantHandle) -> None:
    record = json.dumps(usage_record(volume=...))
    text = '{"records": [' + record[:-1] + ', "volume": ' + "9" * 5000 + "}]}"

    body = assert_problem(raw_post(tenant.api, "/v1/usage-records", text), 400, "malformed_body")

    assert "json" in body["detail"].lower()


def test_an_empty_idempotency_key_is_refused_not_ignored(tenant: TenantHandle) -> None:
    response = tenant.api.client.post("/v1/offers", json=OFFER, headers=tenant.api.headers({"Idempotency-Key": ""}))

    assert_problem(response, 400, "invalid_idempotency_key")


# --- dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "period", ["0000-01", "1999-12", "2101-01", "9999-12", "2025-13", "2025-1", "\uff12\uff10\uff12\uff15-01"]
)
def test_a_billing_run_period_outside_2000_to_2100_is_a_422(tenant: TenantHandle, period: str) -> None:
    body = assert_problem(tenant.api.post("/v1/billing-runs", {"period": period}), 422, "validation_failed")

    assert set(body["errors"]) == {"period"}


def test_a_period_filter_outside_the_range_is_a_422(tenant: TenantHandle) -> None:
    body = assert_problem(tenant.api.get("/v1/invoices", period="0000-01"), 422, "validation_failed")

    assert set(body["errors"]) == {"period"}


@pytest.mark.parametrize(
    "started_at",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1999-12-31T23:59:59Z",
        "2025-01-31T10:00:00",  # naive: whose midnight?
        "2025-01-31 10:00:00Z",
        "2025-02-30T10:00:00Z",
        "2025-01-31T10:00:00+24:00",
    ],
)
def test_a_usage_start_outside_the_range_or_without_offset_is_a_422(tenant: TenantHandle, started_at: str) -> None:
    response = tenant.api.post("/v1/usage-records", {"records": [usage_record(started_at=started_at)]})

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]["records"]["0"]) == {"started_at"}


def test_a_started_at_in_year_9999_is_refused_in_the_document_too(tenant: TenantHandle) -> None:
    field = component(document(tenant.api), "UsageRecordIn")["properties"]["started_at"]

    assert not re.search(field["pattern"], "9999-12-31T23:59:59-14:00")
    assert re.search(field["pattern"], "2025-01-31T10:00:00+01:00")


# --- numbers, countries, money ------------------------------------------------------------------------


@pytest.mark.parametrize("volume", [1.5, 1.0, "1", True, 1e20])
def test_a_volume_that_is_not_a_json_integer_is_a_422_not_truncated(tenant: TenantHandle, volume: Any) -> None:
    response = tenant.api.post("/v1/usage-records", {"records": [usage_record(volume=volume)]})

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]["records"]["0"]) == {"volume"}


@pytest.mark.parametrize("limit", ["1.5", "1e1", "+5", "1_0", " 5", "\uff15"])
def test_a_limit_that_is_not_plain_digits_is_a_422(tenant: TenantHandle, limit: str) -> None:
    body = assert_problem(tenant.api.get("/v1/customers", limit=limit), 422, "validation_failed")

    assert set(body["errors"]) == {"limit"}


@pytest.mark.parametrize("country", ["XX", "EU", "ZZ", "UN", "XK", "001", "fr", "FRA", ""])
def test_a_country_that_is_not_an_assigned_iso_code_is_a_422(operator: Operator, country: str) -> None:
    response = operator.api.post(
        "/v1/tenants",
        {"name": "Brand", "slug": "brand-xx", "country": country, "currency": "EUR", "timezone": "Europe/Paris"},
    )

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"country"}


def test_a_customer_address_in_country_xx_is_a_422(tenant: TenantHandle) -> None:
    response = tenant.api.post(
        "/v1/customers", {"name": "Ada", "email": "ada@example.com", "address": {**ADDRESS, "country": "XX"}}
    )

    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == {"address": {"country": ["Must be an ISO 3166-1 alpha-2 country code such as FR."]}}


def test_the_document_lists_the_countries_the_api_accepts(operator: Operator) -> None:
    countries = set(component(document(operator.api), "TenantCreate")["properties"]["country"]["enum"])

    assert len(countries) == 249  # ISO 3166-1 assigns 249 alpha-2 codes
    assert {"FR", "DE", "US", "GB", "JP", "AQ", "SS", "BQ"} <= countries
    assert not countries & {"XX", "EU", "ZZ", "UN", "XK", "AC", "IC", "001"}


@pytest.mark.parametrize("price", ["-1.00", "-0.01", "-0"])
def test_a_negative_price_is_a_422(tenant: TenantHandle, price: str) -> None:
    response = tenant.api.post("/v1/offers", {**OFFER, "price": price})

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]) == {"price"}


def test_the_document_refuses_a_negative_price_too(tenant: TenantHandle) -> None:
    doc = document(tenant.api)

    for name, field in [
        ("OfferCreate", "price"),
        ("OveragePrices", "data_per_mb"),
        ("OveragePrices", "voice_per_minute"),
        ("OveragePrices", "sms_per_message"),
    ]:
        pattern = component(doc, name)["properties"][field]["pattern"]
        assert re.search(pattern, "9.99"), (name, field)
        assert not re.search(pattern, "-1.00"), (name, field)


def test_strings_of_request_bodies_have_a_bounded_length_in_the_document(tenant: TenantHandle) -> None:
    doc = document(tenant.api)
    bodies = {
        media["schema"]["$ref"].rsplit("/", 1)[-1]
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for operation in item.values()
        if isinstance(operation, dict)
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in media.get("schema", {})
    }
    unbounded = []
    seen: set[str] = set()
    while bodies:
        name = bodies.pop()
        seen.add(name)
        for field, prop in component(doc, name).get("properties", {}).items():
            items = prop.get("items", prop)
            ref = items.get("$ref")
            if ref:
                bodies |= {ref.rsplit("/", 1)[-1]} - seen
                continue
            types = items.get("type")
            is_string = types == "string" or (isinstance(types, list) and "string" in types)
            if is_string and "maxLength" not in items and "enum" not in items:
                unbounded.append(f"{name}.{field}")

    assert {"OfferCreate", "UsageRecordIn", "CustomerCreate", "Address"} <= seen
    assert unbounded == []


# --- rules across fields -------------------------------------------------------------------------------


def test_a_usage_record_without_subscription_and_msisdn_is_a_422(tenant: TenantHandle) -> None:
    response = tenant.api.post("/v1/usage-records", {"records": [usage_record(msisdn=...)]})

    body = assert_problem(response, 422, "validation_failed")
    assert set(body["errors"]["records"]["0"]) == {"subscription"}


def test_the_document_requires_subscription_or_msisdn_as_the_api_does(tenant: TenantHandle) -> None:
    record = component(document(tenant.api), "UsageRecordIn")

    required_sets = [set(branch["required"]) for branch in record["anyOf"]]
    assert required_sets == [{"subscription"}, {"msisdn"}]
    # Either one alone is enough for the API, as the document says.
    for line in ({"subscription": "sub_01J00000000000000000000000"}, {"msisdn": "+33612345678"}):
        response = tenant.api.post("/v1/usage-records", {"records": [{**usage_record(msisdn=...), **line}]})
        assert response.status_code == 200, response.json


# --- cursors and metrics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor", ["zzz", "cus_123", "off_01J00000000000000000000000", "cus_01j00000000000000000000000", ""]
)
def test_a_cursor_that_is_not_an_id_of_the_list_is_a_400_invalid_cursor(tenant: TenantHandle, cursor: str) -> None:
    customer(tenant.api)

    body = assert_problem(tenant.api.get("/v1/customers", starting_after=cursor), 400, "invalid_cursor")

    assert set(body["errors"]) == {"starting_after"}


def test_a_cursor_of_the_right_kind_still_pages(tenant: TenantHandle) -> None:
    first = published_offer(tenant.api)["id"]
    second = published_offer(tenant.api, code="S30")["id"]

    response = tenant.api.get("/v1/offers", starting_after=first)

    assert response.status_code == 200, response.json
    assert [item["id"] for item in response.json["data"]] == [second]


def test_metrics_are_served_with_the_prometheus_text_content_type(api: ApiCaller) -> None:
    response = api.get("/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE" in response.get_data(as_text=True)


# --- what the HTTP servers answer themselves -----------------------------------------------------------


class live_wsgi:  # noqa: N801 (used as a context manager, like contextlib's)
    """A WSGI app on werkzeug's threaded server, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn for real, with the production configuration, serving the app in embedded mode."""
    var_dir = tmp_path_factory.mktemp("gunicorn-var")
    env = {**os.environ, "MVNE_VAR_DIR": str(var_dir), "MVNE_LOG_LEVEL": "WARNING"}
    with gunicorn_server(env, var_dir / "gunicorn.log", workers=1, threads=2) as base:
        yield base


def assert_server_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:mvne:problem:{code}"
    assert body["title"]
    assert body["detail"]


def test_an_oversize_header_under_gunicorn_is_a_431_problem(gunicorn_url: str) -> None:
    response = httpx.get(f"{gunicorn_url}/healthz", headers={"X-Padding": "a" * 9000}, timeout=10)

    assert_server_problem(response, 431, "header_fields_too_large")


def test_too_many_headers_under_gunicorn_is_a_431_problem(gunicorn_url: str) -> None:
    headers = {f"X-H{n}": "1" for n in range(120)}

    assert_server_problem(
        httpx.get(f"{gunicorn_url}/healthz", headers=headers, timeout=10), 431, "header_fields_too_large"
    )


def test_an_oversize_request_line_under_gunicorn_is_a_414_problem(gunicorn_url: str) -> None:
    response = httpx.get(f"{gunicorn_url}/healthz", params={"q": "a" * 5000}, timeout=10)

    assert_server_problem(response, 414, "uri_too_long")


def test_gunicorn_still_serves_the_app_with_the_problem_worker(gunicorn_url: str) -> None:
    assert httpx.get(f"{gunicorn_url}/healthz", timeout=5).json() == {"status": "ok"}
    response = httpx.get(f"{gunicorn_url}/v1/offers?starting_after=%00", timeout=5)
    assert response.status_code in (400, 401, 422)
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_oversize_header_under_waitress_is_a_431_problem() -> None:
    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    server = use_problem_errors(create_server(hello, host="127.0.0.1", port=0, max_request_header_size=4096))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    try:
        assert httpx.get(base, timeout=5).text == "hello"
        response = httpx.get(base, headers={"X-Padding": "a" * 9000}, timeout=5)
    finally:
        server.close()
        thread.join(timeout=5)

    assert_server_problem(response, 431, "header_fields_too_large")


@pytest.mark.parametrize(
    "path", ["/console/verify-email", "/console/accept-invitation", "/oauth/authorize", "/oauth/revoke"]
)
def test_the_pages_people_open_refuse_nul_bytes_and_huge_tokens_without_a_server_error(app: Flask, path: str) -> None:
    client = app.test_client()
    answers = [
        client.get(path, query_string={"token": "a\x00b", "client_id": "c\x00"}),
        client.get(path, query_string={"token": "x" * 5000}),
        client.post(path, data={"token": "a\x00b", "name": "Sam\x00", "password": "p\x00", "email": "a\x00@b.c"}),
        client.post(path, data={"token": "x" * 5000, "name": "Sam", "password": "long enough words here"}),
    ]

    assert all(400 <= answer.status_code < 500 for answer in answers), [(a.status_code, a.data[:200]) for a in answers]
