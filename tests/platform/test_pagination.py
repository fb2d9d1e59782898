"""Cursor pagination: `limit` and `starting_after`, answered with `data` and `has_more`."""

from __future__ import annotations

import pytest

from tests.platform.problems import assert_problem
from tests.support.api import TenantHandle, customer


def test_paging_two_at_a_time_shows_every_customer_once_in_creation_order(tenant: TenantHandle) -> None:
    created = [customer(tenant.api, name=f"Customer {n}")["id"] for n in range(5)]

    pages: list[tuple[list[str], bool]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "starting_after": cursor}
        response = tenant.api.get("/v1/customers", **params)
        assert response.status_code == 200, response.json
        ids = [item["id"] for item in response.json["data"]]
        pages.append((ids, response.json["has_more"]))
        if not response.json["has_more"]:
            break
        cursor = ids[-1]
        assert len(pages) < 10, pages

    assert pages == [(created[0:2], True), (created[2:4], True), (created[4:5], False)]


def test_a_page_that_ends_exactly_on_the_last_item_has_no_more(tenant: TenantHandle) -> None:
    created = [customer(tenant.api, name=f"Customer {n}")["id"] for n in range(4)]

    response = tenant.api.get("/v1/customers", limit=2, starting_after=created[1])

    assert [item["id"] for item in response.json["data"]] == created[2:]
    assert response.json["has_more"] is False


def test_without_a_limit_a_page_holds_20_items(tenant: TenantHandle) -> None:
    created = [customer(tenant.api, name=f"Customer {n}")["id"] for n in range(21)]

    response = tenant.api.get("/v1/customers")

    assert response.status_code == 200, response.json
    assert [item["id"] for item in response.json["data"]] == created[:20]
    assert response.json["has_more"] is True


@pytest.mark.parametrize("limit", [0, 101, -1, "many"])
def test_a_limit_outside_1_to_100_is_a_422_problem(tenant: TenantHandle, limit: object) -> None:
    body = assert_problem(tenant.api.get("/v1/customers", limit=limit), 422, "validation_failed")

    assert set(body["errors"]) == {"limit"}


def test_another_tenants_list_never_shows_our_customers(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    ours = [customer(tenant.api, name=f"Customer {n}")["id"] for n in range(3)]
    theirs = customer(other_tenant.api)["id"]

    first_page = other_tenant.api.get("/v1/customers", limit=100)
    after_ours = other_tenant.api.get("/v1/customers", limit=100, starting_after=ours[0])

    assert [item["id"] for item in first_page.json["data"]] == [theirs]
    assert not {item["id"] for item in after_ours.json["data"]} & set(ours)
