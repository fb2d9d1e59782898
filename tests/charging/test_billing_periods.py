"""No rated record escapes billing: ended periods only, late usage carried to the next invoice, a preview of
the open period, and usage dated outside its window refused with the reason."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mvne.charging.billing import invoice_customer, period_bounds
from mvne.charging.errors import InvalidPeriod
from mvne.charging.models import UsageRecord
from mvne.charging.usage import UsageWindow, _PeriodOf, period_of
from mvne.infra.runtime import Runtime
from tests.support.api import (
    ApiCaller,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    last_period,
    published_offer,
    wait_for,
)

MB = 1_000_000
PARIS = ZoneInfo("Europe/Paris")


def usage(api: ApiCaller, sub_id: str, started_at: dt.datetime, mb: int) -> dict[str, Any]:
    record = {
        "record_id": f"r-{secrets.token_hex(6)}",
        "subscription": sub_id,
        "service": "data",
        "started_at": started_at.isoformat(),
        "volume": mb * MB,
    }
    response = api.post("/v1/usage-records", {"records": [record]})
    assert response.status_code == 200, response.json
    return dict(response.json)


def billed_run(api: ApiCaller, period: str) -> dict[str, Any]:
    started = api.post("/v1/billing-runs", {"period": period})
    assert started.status_code == 202, started.json

    def finished() -> dict[str, Any] | None:
        run = api.get(f"/v1/billing-runs/{started.json['id']}").json
        return run if run["status"] not in ("pending", "running") else None

    return wait_for(finished, what="the billing run")


@pytest.fixture
def line_since_last_period(runtime: Runtime, tenant: TenantHandle) -> tuple[dict[str, Any], str, dt.datetime]:
    """A customer's line (1000 MB included, 0.01 per MB beyond) active since the last period began."""
    offer = published_offer(tenant.api)
    buyer = customer(tenant.api)
    sub = active_subscription(tenant.api, buyer["id"], offer["id"])
    period, start = last_period()
    backdate_line(runtime, sub["id"], start)
    return {**sub, "customer": buyer["id"]}, period, start


def test_a_run_for_the_open_period_is_refused_with_when_it_ends(tenant: TenantHandle) -> None:
    current = dt.datetime.now(PARIS).strftime("%Y-%m")

    response = tenant.api.post("/v1/billing-runs", {"period": current})

    assert (response.status_code, response.json["code"]) == (409, "period_not_ended")
    _, _, _, end = period_bounds(current, "Europe/Paris")
    assert end.astimezone(PARIS).isoformat() in response.json["detail"]


def test_a_period_ends_at_midnight_in_the_tenants_time_zone() -> None:
    *_, start, end = period_bounds("2026-03", "Europe/Paris")
    assert (start.isoformat(), end.isoformat()) == ("2026-02-28T23:00:00+00:00", "2026-03-31T22:00:00+00:00")
    *_, start, end = period_bounds("2026-03", "America/New_York")
    assert (start.isoformat(), end.isoformat()) == ("2026-03-01T05:00:00+00:00", "2026-04-01T04:00:00+00:00")


@pytest.mark.parametrize("period", ["0000-01", "1999-12", "2101-01"])
def test_a_period_outside_the_supported_years_is_invalid_not_a_crash(period: str) -> None:
    with pytest.raises(InvalidPeriod):
        period_bounds(period, "Europe/Paris")


def test_usage_rated_after_its_period_was_invoiced_goes_on_the_next_invoice_under_its_own_period(
    runtime: Runtime, tenant: TenantHandle, line_since_last_period: tuple[dict[str, Any], str, dt.datetime]
) -> None:
    sub, period, start = line_since_last_period
    assert usage(tenant.api, sub["id"], start + dt.timedelta(days=3), 1_200)["accepted"] == 1
    run = billed_run(tenant.api, period)
    assert (run["status"], run["invoices_created"]) == ("completed", 1), run
    [invoice] = tenant.api.get("/v1/invoices", customer=sub["customer"]).json["data"]
    assert [(line["kind"], line["amount"], line["period"]) for line in invoice["lines"]] == [
        ("recurring", "20.00", None),
        ("overage_data", "2.00", None),
        ("tax", "4.40", None),
    ]

    # 150 MB of the invoiced period arrive after its invoice: rated at once, billed next time.
    assert usage(tenant.api, sub["id"], start + dt.timedelta(days=20), 150)["accepted"] == 1
    preview = tenant.api.get(f"/v1/customers/{sub['customer']}/upcoming-invoice")
    assert preview.status_code == 200, preview.json
    lines = [(line["kind"], line["amount"], line["period"]) for line in preview.json["lines"]]
    assert lines == [("recurring", "20.00", None), ("overage_data", "1.50", period), ("tax", "4.30", None)]
    assert preview.json["period"] == dt.datetime.now(PARIS).strftime("%Y-%m")
    assert preview.json["total"] == "25.80"
    assert sum(Decimal(line["amount"]) for line in preview.json["lines"]) == Decimal(preview.json["total"])

    # The open period cannot be billed through the API yet; issue its invoice as the next run will.
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        issued = invoice_customer(
            session, tenant_id=tenant.id, customer_id=sub["customer"], period=preview.json["period"]
        )
        assert issued is not None
        next_id = issued.id
    next_invoice = tenant.api.get(f"/v1/invoices/{next_id}").json
    carried = [line for line in next_invoice["lines"] if line["period"] == period]
    assert [(line["amount"], line["description"]) for line in carried] == [
        ("1.50", f"Data beyond allowance, usage of {period} ({sub['msisdn']})")
    ]
    # Each chargeable record is billed by exactly one invoice.
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        owners = session.execute(
            select(UsageRecord.invoice_id, UsageRecord.overage_quantity).where(UsageRecord.subscription_id == sub["id"])
        ).all()
    assert sorted((owner, qty) for owner, qty in owners) == sorted([(invoice["id"], 200 * MB), (next_id, 150 * MB)])
    # Once billed, nothing of it is left for the preview.
    again = tenant.api.get(f"/v1/customers/{sub['customer']}/upcoming-invoice").json
    assert [line["period"] for line in again["lines"]] == [None, None]


def test_a_rerun_of_a_billed_period_bills_nothing_twice(
    tenant: TenantHandle, line_since_last_period: tuple[dict[str, Any], str, dt.datetime]
) -> None:
    sub, period, start = line_since_last_period
    usage(tenant.api, sub["id"], start + dt.timedelta(days=1), 1_100)
    first = billed_run(tenant.api, period)
    usage(tenant.api, sub["id"], start + dt.timedelta(days=2), 100)
    second = billed_run(tenant.api, period)

    assert (first["invoices_created"], second["invoices_created"], second["invoices_existing"]) == (1, 0, 1)
    [invoice] = tenant.api.get("/v1/invoices", customer=sub["customer"]).json["data"]
    assert invoice["subtotal"] == "21.00"


def test_the_upcoming_invoice_of_another_tenants_customer_is_not_found(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    buyer = customer(tenant.api)

    response = other_tenant.api.get(f"/v1/customers/{buyer['id']}/upcoming-invoice")

    assert (response.status_code, response.json["code"]) == (404, "customer_not_found")


def test_usage_from_the_future_or_past_its_retention_is_rejected_with_the_reason(
    tenant: TenantHandle, line_since_last_period: tuple[dict[str, Any], str, dt.datetime]
) -> None:
    sub, _, _ = line_since_last_period
    now = dt.datetime.now(dt.UTC)

    in_an_hour = usage(tenant.api, sub["id"], now + dt.timedelta(hours=1), 1)
    next_year = usage(tenant.api, sub["id"], now + dt.timedelta(days=365), 1)
    a_minute_ahead = usage(tenant.api, sub["id"], now + dt.timedelta(minutes=1), 1)

    assert [r["code"] for r in in_an_hour["rejected"] + next_year["rejected"]] == ["in_the_future", "in_the_future"]
    assert "clock-skew" in in_an_hour["rejected"][0]["reason"]
    assert a_minute_ahead["accepted"] == 1  # within the tolerance


def test_the_usage_window_has_a_tolerance_and_a_retention() -> None:
    window = UsageWindow.of(clock_skew_s=60, retention_days=30)
    now = dt.datetime(2026, 6, 15, 12, tzinfo=dt.UTC)

    assert window.refusal(now + dt.timedelta(seconds=60), now) is None
    assert window.refusal(now + dt.timedelta(seconds=61), now) is not None
    assert window.refusal(now - dt.timedelta(days=30), now) is None
    too_old = window.refusal(now - dt.timedelta(days=30, seconds=1), now)
    assert too_old is not None
    assert too_old[0] == "too_old"


def test_an_invoice_is_due_after_the_payment_terms_of_the_tenants_legal_profile(
    tenant: TenantHandle, line_since_last_period: tuple[dict[str, Any], str, dt.datetime]
) -> None:
    from tests.tenants.test_legal_profile import PROFILE

    stored = tenant.api.request("PUT", "/v1/tenant/legal-profile", {**PROFILE, "payment_terms_days": 30})
    assert stored.status_code == 200, stored.json
    sub, period, _ = line_since_last_period

    billed_run(tenant.api, period)

    [invoice] = tenant.api.get("/v1/invoices", customer=sub["customer"]).json["data"]
    issued = dt.datetime.fromisoformat(invoice["issued_at"]).date()
    assert dt.date.fromisoformat(invoice["due_date"]) - issued == dt.timedelta(days=30)


# hypothesis takes naive bounds and puts the time zone on what it draws
FIRST, LAST = dt.datetime(2025, 12, 30), dt.datetime(2027, 1, 2)  # noqa: DTZ001


@settings(max_examples=300, deadline=None)
@given(
    moments=st.lists(
        st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.just(dt.UTC)),
        min_size=1,
        max_size=40,
    ),
    timezone=st.sampled_from(["Europe/Paris", "Pacific/Auckland", "America/St_Johns", "UTC"]),
)
def test_a_batch_finds_each_moments_period_as_one_moment_at_a_time_would(
    moments: list[dt.datetime], timezone: str
) -> None:
    period_at = _PeriodOf(timezone)
    assert [period_at(moment) for moment in moments] == [period_of(moment, timezone) for moment in moments]
