"""Rate limits: per API client, per address without a token, stricter on the token endpoint, shared over Redis.

Each test builds an app of its own with tiny limits on the suite's database (the suite's app has limits far
above what the suite sends). Tokens come from the suite's app: both sign with the same key.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from mvne.infra.settings import Settings, SettingsError, load_settings
from mvne.platform.app import create_app
from tests.infra.test_settings import PRODUCTION
from tests.support.api import TenantHandle, customer
from tests.support.runtimes import side_runtime
from tests.support.subscribers import register_app, signed_in

LIMIT = 5
TOKEN_LIMIT = 3
AppFactory = Callable[..., Flask]


@pytest.fixture
def limited_app(settings: Settings) -> Iterator[AppFactory]:
    """Build apps on the suite's database with LIMIT calls a minute per caller and TOKEN_LIMIT token requests."""
    limits = {"rate_limit_default": f"{LIMIT}/minute", "rate_limit_token": f"{TOKEN_LIMIT}/minute"}
    with contextlib.ExitStack() as runtimes:

        def build(**overrides: Any) -> Flask:
            rt = runtimes.enter_context(side_runtime(settings.with_overrides(**limits, **overrides)))
            return create_app(rt=rt)

        yield build


def call(client: FlaskClient, token: str | None = None, address: str = "192.0.2.10", **headers: str) -> Any:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get("/v1/offers", headers=headers, environ_base={"REMOTE_ADDR": address})


def ask_token(client: FlaskClient, client_id: str, secret: str, address: str) -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        environ_base={"REMOTE_ADDR": address},
    )


def assert_rate_limited(response: Any, limit: int, who: str) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    assert body["type"].endswith(":rate_limited")
    assert f"the limit is {limit} per minute {who}" in body["detail"], body
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"retry in {retry_after} seconds" in body["detail"]
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) <= retry_after


def test_a_clients_call_past_its_limit_gets_429_with_retry_after_and_others_are_unaffected(
    limited_app: AppFactory, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    client = limited_app().test_client()

    answers = [call(client, tenant.api.token) for _ in range(LIMIT)]
    over = call(client, tenant.api.token)
    other = call(client, other_tenant.api.token)

    assert [answer.status_code for answer in answers] == [200] * LIMIT
    assert [answer.headers["RateLimit-Limit"] for answer in answers] == [str(LIMIT)] * LIMIT
    assert [int(answer.headers["RateLimit-Remaining"]) for answer in answers] == list(range(LIMIT - 1, -1, -1))
    assert all(0 < int(answer.headers["RateLimit-Reset"]) <= 60 for answer in answers)
    assert answers[0].headers["RateLimit-Policy"] == f'"api";q={LIMIT};w=60'
    assert answers[1].headers["RateLimit"].startswith(f'"api";r={LIMIT - 2};t=')
    assert_rate_limited(over, LIMIT, "for this API client")
    assert other.status_code == 200
    assert other.headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_a_client_keeps_its_budget_from_any_address_and_an_address_does_not_spend_it(
    limited_app: AppFactory, tenant: TenantHandle
) -> None:
    client = limited_app().test_client()

    spread = [call(client, tenant.api.token, address=f"198.51.100.{n}").status_code for n in range(LIMIT)]
    over = call(client, tenant.api.token, address="198.51.100.99")
    anonymous = call(client, address="198.51.100.1")

    assert spread == [200] * LIMIT
    assert_rate_limited(over, LIMIT, "for this API client")
    assert anonymous.status_code == 401
    assert anonymous.headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_calls_without_a_valid_token_count_against_their_address(limited_app: AppFactory, tenant: TenantHandle) -> None:
    client = limited_app().test_client()
    forged = f"{tenant.api.token}x"

    anonymous = [call(client, address="203.0.113.7").status_code for _ in range(LIMIT - 1)]
    with_a_bad_token = call(client, forged, address="203.0.113.7")
    over = call(client, address="203.0.113.7")
    elsewhere = call(client, address="203.0.113.8")
    a_client_there = call(client, tenant.api.token, address="203.0.113.7")

    assert anonymous == [401] * (LIMIT - 1)
    assert with_a_bad_token.status_code == 401
    assert with_a_bad_token.headers["RateLimit-Remaining"] == "0"
    assert_rate_limited(over, LIMIT, "from this address")
    assert elsewhere.status_code == 401
    assert a_client_there.status_code == 200


def test_the_token_endpoint_is_limited_per_client_id_and_per_address(
    limited_app: AppFactory, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    client = limited_app().test_client()

    # One client id from many addresses: its secret guessed from everywhere leaves its own budget whole...
    guessed = [ask_token(client, tenant.client_id, "wrong", f"198.51.100.{n}") for n in range(TOKEN_LIMIT + 2)]
    # ...which only the tokens it is granted use up.
    granted = [ask_token(client, tenant.client_id, tenant.secret, f"192.0.2.{n}") for n in range(TOKEN_LIMIT)]
    refused = ask_token(client, tenant.client_id, tenant.secret, "192.0.2.200")
    # Many client ids from one address.
    guesses = [ask_token(client, f"cli_guess{n}", "wrong", "192.0.2.77") for n in range(TOKEN_LIMIT)]
    from_that_address = ask_token(client, other_tenant.client_id, other_tenant.secret, "192.0.2.77")
    other_elsewhere = ask_token(client, other_tenant.client_id, other_tenant.secret, "192.0.2.78")
    api_call = call(client, granted[0].json["access_token"])

    assert all(answer.status_code in (400, 401) for answer in guessed), [answer.json for answer in guessed]
    assert [answer.status_code for answer in granted] == [200] * TOKEN_LIMIT
    assert [answer.headers["RateLimit-Remaining"] for answer in granted] == ["2", "1", "0"]
    assert granted[0].headers["RateLimit-Policy"] == f'"token";q={TOKEN_LIMIT};w=60'
    assert_rate_limited(refused, TOKEN_LIMIT, "for this client id")
    assert "Too many token requests" in refused.json["detail"]
    assert all(answer.status_code in (400, 401) for answer in guesses), [answer.json for answer in guesses]
    assert_rate_limited(from_that_address, TOKEN_LIMIT, "from this address")
    assert other_elsewhere.status_code == 200
    # Token requests are not taken from the client's API budget.
    assert api_call.status_code == 200
    assert api_call.headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_each_subscriber_of_an_app_has_a_budget_of_their_own_and_app_token_requests_count_per_address(
    limited_app: AppFactory, app: Flask, tenant: TenantHandle
) -> None:
    self_care = register_app(tenant.api)
    ada, bob = (customer(tenant.api, name=name)["email"] for name in ("Ada Martin", "Bob Durand"))
    ada_token = signed_in(app.test_client(), self_care["id"], ada)["access_token"]
    bob_token = signed_in(app.test_client(), self_care["id"], bob)["access_token"]
    client = limited_app().test_client()

    def me(token: str) -> Any:
        return client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})

    ada_calls = [me(ada_token).status_code for _ in range(LIMIT)]
    ada_over = me(ada_token)
    bob_call = me(bob_token)

    def refresh(address: str) -> Any:
        return client.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": self_care["id"]},
            environ_base={"REMOTE_ADDR": address},
        )

    # An app's id is public: requests naming it from everywhere must not use up a budget its subscribers share.
    from_everywhere = [refresh(f"192.0.2.{n}") for n in range(TOKEN_LIMIT + 2)]
    from_one_address = [refresh("198.51.100.9") for _ in range(TOKEN_LIMIT + 1)]

    assert ada_calls == [200] * LIMIT
    assert_rate_limited(ada_over, LIMIT, "for this subscriber")
    assert bob_call.status_code == 200
    assert bob_call.headers["RateLimit-Remaining"] == str(LIMIT - 1)
    assert [r.json["error"] for r in from_everywhere] == ["invalid_grant"] * (TOKEN_LIMIT + 2)
    assert [r.json["error"] for r in from_one_address[:TOKEN_LIMIT]] == ["invalid_grant"] * TOKEN_LIMIT
    assert_rate_limited(from_one_address[-1], TOKEN_LIMIT, "from this address")


def test_probes_documentation_notifications_and_simulators_are_never_limited(limited_app: AppFactory) -> None:
    app = limited_app()
    client = app.test_client()
    docs = client.get("/v1/docs").get_data(as_text=True)
    asset = docs.split('src="', 1)[1].split('"', 1)[0]
    paths = ["/healthz", "/readyz", "/metrics", "/v1/docs", "/v1/openapi.json", asset, "/sim/smdp/", "/sim/network/"]

    for path in paths:
        answers = [client.get(path, environ_base={"REMOTE_ADDR": "192.0.2.50"}) for _ in range(LIMIT + 3)]
        assert all(answer.status_code != 429 for answer in answers), path
        assert all("RateLimit-Limit" not in answer.headers for answer in answers), path
    notifications = [
        client.post(
            "/gsma/rsp2/es2plus/handleDownloadProgressInfo", json={}, environ_base={"REMOTE_ADDR": "192.0.2.50"}
        )
        for _ in range(LIMIT + 3)
    ]
    assert all(answer.status_code != 429 for answer in notifications)
    assert all("RateLimit-Limit" not in answer.headers for answer in notifications)
    assert call(client, address="192.0.2.50").headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_behind_trusted_proxies_the_forwarded_address_is_the_callers(limited_app: AppFactory) -> None:
    client = limited_app(rate_limit_trusted_proxies=("10.0.0.0/8",)).test_client()
    proxy = "10.1.2.3"

    one = [call(client, address=proxy, **{"X-Forwarded-For": "198.51.100.20"}).status_code for _ in range(LIMIT)]
    over = call(client, address=proxy, **{"X-Forwarded-For": "203.0.113.250, 198.51.100.20, 10.9.9.9"})
    another = call(client, address=proxy, **{"X-Forwarded-For": "198.51.100.21"})
    spoofed = [call(client, address="192.0.2.99", **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(LIMIT + 1)]

    assert one == [401] * LIMIT
    assert_rate_limited(over, LIMIT, "from this address")
    assert another.status_code == 401
    # From an address that is not a trusted proxy the header is ignored: the peer is the caller.
    assert_rate_limited(spoofed[-1], LIMIT, "from this address")


def test_with_redis_unreachable_each_instance_still_limits_in_memory(
    limited_app: AppFactory, tenant: TenantHandle
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    client = limited_app(rate_limit_storage_url=f"redis://127.0.0.1:{closed}/0").test_client()

    answers = [call(client, tenant.api.token).status_code for _ in range(LIMIT)]
    over = call(client, tenant.api.token)

    assert answers == [200] * LIMIT
    assert_rate_limited(over, LIMIT, "for this API client")


def test_instances_share_their_limits_through_redis(
    limited_app: AppFactory, tenant: TenantHandle, redis_server_url: str
) -> None:
    namespace = f"mvne-test-limits-{secrets.token_hex(4)}"
    store = redis.Redis.from_url(redis_server_url)
    try:
        one = limited_app(rate_limit_storage_url=redis_server_url, broker_namespace=namespace).test_client()
        two = limited_app(rate_limit_storage_url=redis_server_url, broker_namespace=namespace).test_client()

        first = [call(one, tenant.api.token).status_code for _ in range(LIMIT - 2)]
        second = [call(two, tenant.api.token) for _ in range(2)]
        over_one = call(one, tenant.api.token)
        over_two = call(two, tenant.api.token)
        tokens = [ask_token(two, tenant.client_id, tenant.secret, "192.0.2.30") for _ in range(TOKEN_LIMIT)]
        token_over = ask_token(one, tenant.client_id, tenant.secret, "192.0.2.31")

        assert first == [200] * (LIMIT - 2)
        assert [answer.status_code for answer in second] == [200, 200]
        assert [answer.headers["RateLimit-Remaining"] for answer in second] == ["1", "0"]
        assert_rate_limited(over_one, LIMIT, "for this API client")
        assert_rate_limited(over_two, LIMIT, "for this API client")
        assert [answer.status_code for answer in tokens] == [200] * TOKEN_LIMIT
        assert_rate_limited(token_over, TOKEN_LIMIT, "for this client id")
        assert list(store.scan_iter(match=f"*{namespace}*")), "the counters are not in Redis"
    finally:
        for key in store.scan_iter(match=f"*{namespace}*"):
            store.delete(key)
        store.close()


def test_rate_limit_settings_are_checked_at_start() -> None:
    for variable in ("MVNE_RATE_LIMIT_DEFAULT", "MVNE_RATE_LIMIT_TOKEN"):
        for bad in ("lots", "0/minute", "10/fortnight", ""):
            with pytest.raises(SettingsError) as refused:
                load_settings({variable: bad})
            assert str(refused.value).startswith(f"{variable}:"), refused.value
            assert repr(bad) in str(refused.value)
    with pytest.raises(SettingsError, match=r"^MVNE_RATE_LIMIT_STORAGE_URL:"):
        load_settings({"MVNE_RATE_LIMIT_STORAGE_URL": "mysql://db/limits"})
    with pytest.raises(SettingsError, match=r"^MVNE_RATE_LIMIT_TRUSTED_PROXIES:"):
        load_settings({"MVNE_RATE_LIMIT_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})
    with pytest.raises(SettingsError, match=r"^MVNE_RATE_LIMIT_STORAGE_URL: production mode needs Redis"):
        load_settings({**PRODUCTION, "MVNE_RATE_LIMIT_STORAGE_URL": "memory://"})

    embedded = load_settings({"MVNE_RATE_LIMIT_DEFAULT": "20/second;1200/minute"})
    production = load_settings(PRODUCTION)

    assert embedded.rate_limit_storage_url == "memory://"
    assert embedded.rate_limit_default == "20/second;1200/minute"
    assert load_settings({}).rate_limit_default == "1200/minute"
    assert production.rate_limit_storage_url == PRODUCTION["MVNE_BROKER_URL"]
