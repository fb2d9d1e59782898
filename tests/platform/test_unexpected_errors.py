"""An unexpected failure is a 500 problem that gives nothing away and writes nothing."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from mvne.infra.runtime import Runtime
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session
from mvne.platform.app import create_app
from mvne.tenants.models import Customer
from mvne.tenants.service import create_customer
from tests.platform.problems import assert_problem
from tests.support.api import ApiCaller, TenantHandle, token_for


def app_with_a_failing_route(runtime: Runtime) -> Flask:
    app = create_app(rt=runtime)

    @app.post("/v1/explode")
    @require("customers:write")
    def explode() -> str:
        create_customer(
            db_session(),
            name="Half Written",
            email="half-written@example.com",
            address={"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "FR"},
        )
        raise RuntimeError("secret internal detail")

    return app


def test_an_unexpected_error_is_a_500_problem_and_rolls_back(runtime: Runtime, tenant: TenantHandle) -> None:
    app = app_with_a_failing_route(runtime)
    client = app.test_client()
    api = ApiCaller(client, token_for(client, tenant.client_id, tenant.secret))

    response = api.post("/v1/explode", {})

    body = assert_problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-Id"]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert session.scalars(select(Customer).where(Customer.email == "half-written@example.com")).all() == []
