"""write_usage_rows: many rated rows at once, each (tenant, record id) written once whatever the way."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mvne.charging.models import UsageRecord
from mvne.charging.usage_writer import USAGE_COLUMNS, Method, write_usage_rows
from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from tests.support.api import TenantHandle, active_subscription, customer, published_offer


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    offer = published_offer(tenant.api, code=f"WR-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def row(tenant_id: str, sub: dict[str, Any], record_id: str, quantity: int = 1_000) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    price = Decimal("0.010000")
    return {
        "id": new_id("usg"),
        "tenant_id": tenant_id,
        "record_id": record_id,
        "subscription_id": sub["id"],
        "msisdn": sub["msisdn"],
        "service": "data",
        "started_at": now,
        "quantity": quantity,
        "period": now.strftime("%Y-%m"),
        "allowance_used": 0,
        "overage_quantity": quantity,
        "amount": price,
        "source": "test",
        "received_at": now,
        "offer_id": None,
        "allowance_before": 0,
        "overage_unit_price": price,
        "amount_exact": Decimal("0.01000000000000000001"),
    }


def quantities(runtime: Runtime, tenant_id: str) -> dict[str, int]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        rows = session.execute(select(UsageRecord.record_id, UsageRecord.quantity)).all()
        return dict(rows)


@pytest.mark.parametrize("method", ["auto", "staging", "insert"])
def test_each_record_is_written_once_and_the_ones_written_are_named(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], method: Method
) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        first = write_usage_rows(
            session,
            [row(tenant.id, line, "a", 1), row(tenant.id, line, "b", 2), row(tenant.id, line, "a", 3)],
            method=method,
        )
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        as_tuples = [
            tuple(r[c] for c in USAGE_COLUMNS) for r in (row(tenant.id, line, "b", 4), row(tenant.id, line, "c", 5))
        ]
        second = write_usage_rows(session, as_tuples, method=method)

    assert (first, second) == ({"a", "b"}, {"c"})
    # The first of a record id repeated in one batch is the one kept, and a row already there is left alone.
    assert quantities(runtime, tenant.id) == {"a": 1, "b": 2, "c": 5}
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        exact = session.scalar(select(UsageRecord.amount_exact).where(UsageRecord.record_id == "a"))
    assert exact == Decimal("0.01000000000000000001")


def test_a_platform_session_copies_straight_in_and_a_duplicate_is_still_skipped(
    runtime: Runtime, tenant: TenantHandle, other_tenant: TenantHandle, line: dict[str, Any]
) -> None:
    other_offer = published_offer(other_tenant.api, code=f"WR-{secrets.token_hex(3)}")
    other_line = active_subscription(other_tenant.api, customer(other_tenant.api)["id"], other_offer["id"])
    with runtime.db.transaction(platform=True) as session:
        first = write_usage_rows(session, [row(tenant.id, line, "p1"), row(other_tenant.id, other_line, "p1")])
    with runtime.db.transaction(platform=True) as session:
        # One row already there: the COPY is undone and the rows go through the staging table instead.
        second = write_usage_rows(session, [row(tenant.id, line, "p1", 9), row(tenant.id, line, "p2", 7)])

    assert (first, second) == ({"p1"}, {"p2"})
    assert quantities(runtime, tenant.id) == {"p1": 1_000, "p2": 7}
    assert quantities(runtime, other_tenant.id) == {"p1": 1_000}


def test_a_tenant_session_cannot_write_another_tenants_rows(
    runtime: Runtime,
    tenant: TenantHandle,
    other_tenant: TenantHandle,
    line: dict[str, Any],
    postgres_settings: Settings,  # row-level security is PostgreSQL's
) -> None:
    with pytest.raises(Exception, match="row-level security"), runtime.db.transaction(tenant_id=other_tenant.id) as s:
        write_usage_rows(s, [row(tenant.id, line, "theirs")])
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 0


def test_rows_without_their_tenant_or_record_id_are_refused(runtime: Runtime, tenant: TenantHandle) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session, pytest.raises(ValueError, match="record_id"):
        write_usage_rows(session, [("usg_1", "x")], ["id", "tenant_id"])
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert write_usage_rows(session, []) == set()
