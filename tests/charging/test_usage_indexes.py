"""The statements that read usage records by line find an index that serves them (PostgreSQL).

`usage_records` keeps few indexes, because every rated record pays for each of them: one by line
(line, period, service, start) and a partial one holding only the overage no invoice has billed. These
tests take the statements the code sends, as sent, and ask the planner (sequential scans made dear) which
index it would use; the partial index must serve the billing run's search even with the line index gone,
or its predicate no longer matches the query and billing would read every record of its lines.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from mvne.charging.billing import _unbilled_usage
from mvne.charging.usage import usage_summary
from mvne.charging.usage_writer import write_usage_rows
from mvne.infra.ids import new_id
from mvne.infra.migrate import owner_url
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.provisioning.models import Subscription
from tests.support.api import TenantHandle, active_subscription, customer, published_offer


@pytest.fixture
def owner(postgres_settings: Settings) -> Iterator[Engine]:
    engine = create_engine(owner_url(postgres_settings), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    offer = published_offer(tenant.api, code=f"IX-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def _record(tenant_id: str, line: dict[str, Any], overage: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "id": new_id("usg"),
        "tenant_id": tenant_id,
        "record_id": f"ix-{secrets.token_hex(4)}",
        "subscription_id": line["id"],
        "msisdn": line["msisdn"],
        "service": "data",
        "started_at": now,
        "quantity": 1_000,
        "period": now.strftime("%Y-%m"),
        "allowance_used": 1_000 - overage,
        "overage_quantity": overage,
        "amount": Decimal("0.01") if overage else Decimal(0),
        "source": "test",
        "received_at": now,
    }


def _sent(runtime: Runtime, tenant_id: str, call: Callable[[Session], Any]) -> list[tuple[str, Any]]:
    """The statements `call` sends to usage_records, with their parameters, as the driver received them."""
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "usage_records" in statement:
            sent.append((statement, parameters))

    engine = runtime.db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        with runtime.db.transaction(tenant_id=tenant_id) as session:
            call(session)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert sent, "the call sent no statement to usage_records"
    return sent


def _plan(connection: Connection, statement: str, parameters: Any) -> str:
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return "\n".join(connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())


def test_the_billing_runs_search_for_unbilled_overage_is_served_by_the_partial_index(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], owner: Engine
) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        write_usage_rows(session, [_record(tenant.id, line, 0), _record(tenant.id, line, 400)])
    period = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    rows: list[Any] = []
    sent = _sent(runtime, tenant.id, lambda s: rows.extend(_unbilled_usage(s, [line["id"]], period, claim_for=None)))
    assert [(sub, qty) for sub, _, _, qty, _ in rows] == [(line["id"], 400)]

    with owner.connect() as connection, connection.begin() as transaction:
        # Without the index by line, only the partial index is left to serve the search, if its predicate holds.
        connection.exec_driver_sql("DROP INDEX ix_usage_records_line")
        plan = _plan(connection, *sent[0])
        transaction.rollback()
    assert "ix_usage_records_unbilled" in plan, plan


def test_a_lines_summary_for_a_period_is_served_by_the_index_by_line(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], owner: Engine
) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        write_usage_rows(session, [_record(tenant.id, line, 0)])
    period = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    sent = _sent(runtime, tenant.id, lambda s: usage_summary(s, s.get_one(Subscription, line["id"]), period))

    with owner.connect() as connection, connection.begin() as transaction:
        plan = _plan(connection, *sent[-1])
        transaction.rollback()
    assert "ix_usage_records_line" in plan, plan
