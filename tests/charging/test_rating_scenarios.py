"""The rating engine through the API on a real database: one test per named scenario, figures worked by hand."""

from __future__ import annotations

import datetime as dt
import secrets
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from mvne.catalog.models import OfferVersion
from mvne.catalog.terms import AllowanceTerm, LineTerms, TermsTimeline
from mvne.charging.models import BalanceBucket, UsageAdjustment
from mvne.charging.rerating import execute_rerating_run
from mvne.charging.usage import ensure_plan_buckets
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Event, Tenant
from tests.support.api import (
    ApiCaller,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    published_offer,
    wait_for,
)
from tests.support.subscribers import register_app, subscriber_api

MB = 1_000_000
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
CALLED = "+33612345678"
# No voice or data included: every second and byte is overage, priced by the card or the offer.
NOTHING_INCLUDED = {"data_mb": 0, "voice_minutes": 0, "sms": 0}


def line_on(api: ApiCaller, **offer: Any) -> dict[str, Any]:
    created = published_offer(api, code=f"RAT-{secrets.token_hex(3)}", **offer)
    return active_subscription(api, customer(api)["id"], created["id"])


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    """1000 MB, 60 min and 10 SMS included; beyond, 0.01 per MB, 0.20 per minute, 0.10 per SMS."""
    return line_on(tenant.api)


@pytest.fixture
def bare_line(tenant: TenantHandle) -> dict[str, Any]:
    """Nothing included: the overage prices tell."""
    return line_on(tenant.api, allowances=NOTHING_INCLUDED)


@pytest.fixture
def hosted(tenant: TenantHandle) -> TenantHandle:
    """The tenant on the simulated French host network (MCC 001)."""
    chosen = tenant.api.request("PUT", "/v1/tenant/host-network", {"agreement_id": "nag_sim_fr"})
    assert chosen.status_code == 200, chosen.json
    return tenant


def rate_line(prefix: str = "*", service: str = "voice", price: str = "0.12", **changes: Any) -> dict[str, Any]:
    return {"prefix": prefix, "zone": "Any", "service": service, "price": price, "first_increment": 60,
            "next_increment": 60, **changes}  # fmt: skip


def rate_card(
    api: ApiCaller,
    *versions: tuple[str, list[dict[str, Any]]],
    purpose: str = "retail",
    agreement: str | None = None,
    precision: int = 6,
) -> str:
    """A card with published versions (effective from, lines); retail without agreement is the default card."""
    body = {"name": f"Card {secrets.token_hex(3)}", "network_agreement_id": agreement, "purpose": purpose,
            "precision": precision}  # fmt: skip
    card = api.post("/v1/rate-cards", body)
    assert card.status_code == 201, card.json
    for effective_from, lines in versions:
        version = api.post(f"/v1/rate-cards/{card.json['id']}/versions", {"effective_from": effective_from,
                                                                           "lines": lines})  # fmt: skip
        assert version.status_code == 201, version.json
        published = api.post(f"/v1/rate-cards/{card.json['id']}/versions/{version.json['id']}/publish")
        assert published.status_code == 200, published.json
    return str(card.json["id"])


def at(sub: dict[str, Any], seconds: int = 60) -> str:
    return (dt.datetime.fromisoformat(sub["activated_at"]) + dt.timedelta(seconds=seconds)).isoformat()


def voice(record_id: str, sub: dict[str, Any], seconds: int, **changes: Any) -> dict[str, Any]:
    record = {"record_id": record_id, "subscription": sub["id"], "service": "voice", "started_at": at(sub),
              "duration": seconds, "called_number": CALLED}  # fmt: skip
    return {**record, **changes}


def data(record_id: str, sub: dict[str, Any], volume: int, **changes: Any) -> dict[str, Any]:
    record = {"record_id": record_id, "subscription": sub["id"], "service": "data", "started_at": at(sub),
              "volume": volume}  # fmt: skip
    return {**record, **changes}


def send(api: ApiCaller, *records: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/usage-records", {"records": list(records)})
    assert response.status_code == 200, response.json
    return dict(response.json)


def rated(api: ApiCaller, *records: dict[str, Any]) -> list[dict[str, Any]]:
    """Send records that must all be rated; their explanations, in order."""
    result = send(api, *records)
    assert [r["outcome"] for r in result["records"]] == ["rated"] * len(records), result
    return [explain(api, r["usage_record"]) for r in result["records"]]


def explain(api: ApiCaller, usage_record_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/usage-records/{usage_record_id}")
    assert response.status_code == 200, response.json
    return dict(response.json)


def events(runtime: Runtime, tenant_id: str, type_: str) -> list[dict[str, Any]]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        return [e.data for e in session.scalars(select(Event).where(Event.type == type_).order_by(Event.id))]


def test_an_allowance_used_exactly_to_its_end(tenant: TenantHandle, line: dict[str, Any]) -> None:
    to_the_end, next_second = rated(tenant.api, voice("v1", line, 3600), voice("v2", line, 1))

    assert (to_the_end["allowance"], to_the_end["amount"]) == ({"before": 3600, "used": 3600, "after": 0}, "0.00")
    assert [b["quantity"] for b in to_the_end["buckets"]] == [3600]
    assert (next_second["overage_quantity"], next_second["priced_by"]) == (1, "usage_price")
    assert next_second["amount"] == "0.003333"  # 0.20 per minute / 60, rounded half-up to 6 decimals
    assert next_second["buckets"] == []


def test_a_call_split_between_allowance_and_overage(tenant: TenantHandle, line: dict[str, Any]) -> None:
    rate_card(tenant.api, ("2026-01-01", [rate_line(connect_fee="0.05")]))
    rated(tenant.api, voice("most", line, 3540))  # 59 of the 60 minutes

    (split,) = rated(tenant.api, voice("split", line, 100))

    # 60 s from the allowance; the 40 s beyond priced as an event of their own at 60/60: 60 s x 0.12, no fee.
    assert (split["allowance"]["used"], split["overage_quantity"]) == (60, 40)
    assert split["retail"]["billed_quantity"] == 60
    assert (split["retail"]["connect_fee"], split["retail"]["connect_fee_applied"]) == ("0.05", False)
    assert split["amount"] == "0.12"


@pytest.mark.parametrize(
    "pattern",
    [(60, 60, 120, "0.24"), (30, 6, 66, "0.132"), (1, 1, 61, "0.122")],
    ids=["60/60", "30/6", "1/1"],
)
def test_each_voice_increment_pattern_with_its_rounding(
    tenant: TenantHandle, bare_line: dict[str, Any], pattern: tuple[int, int, int, str]
) -> None:
    first, following, billed, amount = pattern  # 61 s: 2 min, 66 s or 61 s at 0.12 per minute
    rate_card(tenant.api, ("2026-01-01", [rate_line(first_increment=first, next_increment=following)]))

    (call,) = rated(tenant.api, voice("c1", bare_line, 61))

    assert (call["retail"]["billed_quantity"], call["amount"]) == (billed, amount)
    assert (call["retail"]["first_increment"], call["retail"]["next_increment"]) == (first, following)


def test_data_in_kilobyte_blocks_rounded_once_at_the_cards_precision(
    tenant: TenantHandle, bare_line: dict[str, Any]
) -> None:
    lines = [rate_line(service="data", price="0.013", first_increment=1, next_increment=1)]
    rate_card(tenant.api, ("2026-01-01", lines), precision=4)

    (session,) = rated(tenant.api, data("d1", bare_line, 1_500_500))

    # 1,500,500 bytes -> 1501 KB = 1,501,000 bytes; 0.013 x 1.501 MB = 0.019513, rounded once to 4 decimals.
    assert session["retail"]["billed_quantity"] == 1_501_000
    assert (session["amount_exact"], session["amount"]) == ("0.019513", "0.0195")
    assert session["retail"]["rounding"] == "half_up to 4 decimals, once per record"


def test_a_connect_fee_when_no_allowance_covers_the_call(tenant: TenantHandle, bare_line: dict[str, Any]) -> None:
    rate_card(tenant.api, ("2026-01-01", [rate_line(connect_fee="0.05")]))

    (call,) = rated(tenant.api, voice("c1", bare_line, 100))

    assert call["retail"]["connect_fee_applied"] is True
    assert call["amount"] == "0.29"  # 0.05 + 2 min x 0.12


def test_a_rate_change_at_a_versions_effective_midnight_in_the_tenants_time_zone(
    runtime: Runtime, tenant: TenantHandle, bare_line: dict[str, Any]
) -> None:
    today = dt.datetime.now(PARIS).date()
    midnight = dt.datetime(today.year, today.month, today.day, tzinfo=PARIS)
    backdate_line(runtime, bare_line["id"], midnight - dt.timedelta(days=3))
    rate_card(
        tenant.api,
        ("2026-01-01", [rate_line(price="0.10")]),
        (today.isoformat(), [rate_line(price="0.20")]),
    )
    before_midnight = voice("late", bare_line, 60, started_at=(midnight - dt.timedelta(seconds=30)).isoformat())
    after_midnight = voice("early", bare_line, 60, started_at=(midnight + dt.timedelta(seconds=30)).isoformat())

    late, early = rated(tenant.api, before_midnight, after_midnight)

    assert (late["retail"]["version_number"], late["amount"]) == (1, "0.10")
    assert (early["retail"]["version_number"], early["amount"]) == (2, "0.20")


def test_eu_roaming_within_fair_use_uses_the_allowance_and_beyond_pays_the_surcharge(hosted: TenantHandle) -> None:
    # 60 home minutes that roam like at home in the EU up to 2 minutes; beyond, 0.30 per minute in the EU.
    line = line_on(
        hosted.api,
        allowances={"data_mb": 1000, "voice_minutes": 0, "sms": 10},
        zone_allowances=[
            {"service": "voice", "zone": "home", "amount": 60, "roam_like_at_home": True, "eu_fair_use_amount": 2}
        ],
        usage_prices={"eu": {"data": "0.02", "voice": "0.30", "sms": "0.10"}},
    )

    within, beyond = rated(
        hosted.api, voice("eu1", line, 100, visited_plmn="26201"), voice("eu2", line, 60, visited_plmn="262-01")
    )
    (at_home,) = rated(hosted.api, voice("home", line, 60))

    assert (within["zone"], within["allowance"]["used"], within["amount"]) == ("eu", 100, "0.00")
    # 20 s left of the EU fair use; 40 s beyond at the EU price: 40 / 60 x 0.30.
    assert (beyond["allowance"]["used"], beyond["overage_quantity"], beyond["amount"]) == (20, 40, "0.20")
    assert (at_home["zone"], at_home["allowance"]["used"]) == ("home", 60)
    buckets = hosted.api.get(f"/v1/subscriptions/{line['id']}/balances").json["buckets"]
    shown = next(b for b in buckets if b["service"] == "voice" and b["zone"] == "home")
    assert (shown["used"], shown["eu_used"], shown["eu_fair_use"], shown["roam_like_at_home"]) == (180, 120, 120, True)


def test_world_zone_pays_per_use_and_leaves_the_home_allowance(hosted: TenantHandle, line: dict[str, Any]) -> None:
    rate_card(hosted.api, ("2026-01-01", [rate_line(price="0.01")]))

    (abroad,) = rated(hosted.api, voice("w1", line, 60, visited_plmn="310410"))

    # Not the home card: world usage is priced by the offer (0.20 per minute), and no bucket is touched.
    assert (abroad["zone"], abroad["priced_by"], abroad["amount"]) == ("world", "usage_price", "0.20")
    assert abroad["buckets"] == []
    assert abroad["allowance"]["used"] == 0


def test_zero_rated_and_premium_capped_numbers(tenant: TenantHandle, bare_line: dict[str, Any]) -> None:
    rate_card(
        tenant.api,
        (
            "2026-01-01",
            [
                rate_line(),
                rate_line(prefix="33800", zero_rated="true"),
                rate_line(prefix="33899", price="3.00", premium="true", premium_cap="5.00"),
            ],
        ),
    )

    free, capped = rated(
        tenant.api,
        voice("free", bare_line, 600, called_number="+33800123456"),
        voice("premium", bare_line, 600, called_number="+33899123456"),
    )

    assert (free["retail"]["prefix"], free["retail"]["zero_rated"], free["amount"]) == ("33800", True, "0.00")
    # 10 min x 3.00 = 30.00, capped at 5.00.
    assert (capped["retail"]["prefix"], capped["amount"]) == ("33899", "5.00")


def test_duplicates_in_one_batch_and_across_batches(tenant: TenantHandle, line: dict[str, Any]) -> None:
    first = send(tenant.api, data("d1", line, MB), data("d1", line, MB), data("d2", line, MB))
    again = send(tenant.api, data("d2", line, MB), data("d3", line, MB))

    assert [r["outcome"] for r in first["records"]] == ["rated", "duplicate", "rated"]
    assert [r["outcome"] for r in again["records"]] == ["duplicate", "rated"]
    data_bucket = next(b for b in tenant.api.get(f"/v1/subscriptions/{line['id']}/balances").json["buckets"]
                       if b["service"] == "data")  # fmt: skip
    assert data_bucket["used"] == 3 * MB


def test_a_rejected_record_fixed_and_re_rated(tenant: TenantHandle, bare_line: dict[str, Any]) -> None:
    rate_card(tenant.api, ("2026-01-01", [rate_line(prefix="33")]))

    result = send(tenant.api, voice("uk", bare_line, 60, called_number="+447700900123"))
    (refused,) = result["rejected"]
    fixed = tenant.api.request("PATCH", f"/v1/usage-rejections/{refused['rejection']}", {"called_number": CALLED})
    rerated = tenant.api.post(f"/v1/usage-rejections/{refused['rejection']}/rerate")

    assert refused["code"] == "no_rate"
    assert fixed.status_code == 200, fixed.json
    assert rerated.status_code == 200, rerated.json
    assert (rerated.json["called_number"], rerated.json["retail"]["prefix"], rerated.json["amount"]) == (
        CALLED,
        "33",
        "0.12",
    )


def _billing_run(api: ApiCaller, period: str) -> None:
    started = api.post("/v1/billing-runs", {"period": period})
    assert started.status_code == 202, started.json
    run_id = started.json["id"]
    run = wait_for(
        lambda: (r := api.get(f"/v1/billing-runs/{run_id}").json)["status"] not in ("pending", "running") and r,
        what="billing run",
    )
    assert run["status"] == "completed", run


def _rerating_run(api: ApiCaller, period: str) -> dict[str, Any]:
    started = api.post("/v1/rerating-runs", {"period": period})
    assert started.status_code == 202, started.json
    run_id = started.json["id"]
    run: dict[str, Any] = wait_for(
        lambda: (r := api.get(f"/v1/rerating-runs/{run_id}").json)["status"] not in ("pending", "running") and r,
        what="re-rating run",
    )
    assert run["status"] == "completed", run
    return run


def _periods_back(count: int) -> tuple[str, dt.datetime]:
    here = dt.datetime.now(PARIS).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(count):
        here = (here - dt.timedelta(days=1)).replace(day=1)
    return here.strftime("%Y-%m"), here


def test_a_period_re_rated_bills_the_difference_on_the_next_invoice_and_a_second_run_adds_nothing(
    runtime: Runtime, tenant: TenantHandle, bare_line: dict[str, Any]
) -> None:
    period, start = _periods_back(2)
    following, _ = _periods_back(1)
    backdate_line(runtime, bare_line["id"], start)
    when = (start + dt.timedelta(days=2)).isoformat()
    billed, unbilled = rated(
        tenant.api,
        voice("billed", bare_line, 90, started_at=when),  # 1.5 min x 0.20 = 0.30 by the offer
        data("free", bare_line, 0, started_at=when),
    )
    _billing_run(tenant.api, period)
    # Then a retail card appears: home usage is now priced 0.50 per minute, 60/60.
    rate_card(tenant.api, ("2026-01-01", [rate_line(price="0.50")]))

    first = _rerating_run(tenant.api, period)
    # Its job delivered again after it finished: nothing more is written.
    execute_rerating_run(runtime.db, tenant_id=tenant.id, rerating_run_id=first["id"])
    again = tenant.api.get(f"/v1/rerating-runs/{first['id']}").json
    second = _rerating_run(tenant.api, period)
    _billing_run(tenant.api, following)

    assert (billed["amount"], unbilled["amount"]) == ("0.30", "0.00")
    assert (first["records_total"], first["records_done"], first["adjustments"]) == (2, 2, 1)
    assert (again["status"], again["records_done"], again["adjustments"]) == ("completed", 2, 1)
    assert (second["records_done"], second["adjustments"], second["records_changed"]) == (2, 0, 0)
    invoices = tenant.api.get("/v1/invoices", customer=bare_line["customer"]).json["data"]
    later = next(i for i in invoices if i["period"] == following)
    adjustment = [line for line in later["lines"] if line["kind"] == "rerating_adjustment"]
    # 2 min x 0.50 = 1.00 now, 0.30 billed: 0.70 more.
    assert [(a["description"], a["amount"]) for a in adjustment] == [
        (f"Re-rating adjustment, usage of {period} ({bare_line['msisdn']})", "0.70")
    ]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert list(session.scalars(select(UsageAdjustment.invoice_id))) == [later["id"]]
    record = explain(tenant.api, billed["id"])
    # The invoiced record keeps what its invoice billed; the difference lives in the adjustment.
    assert record["amount"] == "0.30"
    assert record["invoice"] is not None
    assert record["invoice"] != later["id"]


def test_thresholds_50_80_100_are_sent_once_each(runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]) -> None:
    for number, mb in enumerate((500, 100, 200, 300, 50)):
        rated(tenant.api, data(f"t{number}", line, mb * MB))

    sent = events(runtime, tenant.id, "balance.threshold_reached")

    assert [(e["percent"], e["service"], e["zone"], e["used"]) for e in sent] == [
        (50, "data", "home", 500 * MB),
        (80, "data", "home", 800 * MB),
        (100, "data", "home", 1000 * MB),
    ]
    assert {e["subscription"] for e in sent} == {line["id"]}


def test_wholesale_and_margin_on_a_record(hosted: TenantHandle, bare_line: dict[str, Any]) -> None:
    rate_card(hosted.api, ("2026-01-01", [rate_line(price="0.12")]))
    rate_card(
        hosted.api,
        ("2026-01-01", [rate_line(price="0.03", connect_fee="0.01")]),
        purpose="wholesale",
        agreement="nag_sim_fr",
    )

    (call,) = rated(hosted.api, voice("c1", bare_line, 90))

    # Retail 2 min x 0.12 = 0.24; wholesale 2 min x 0.03 + 0.01 = 0.07; margin 0.17.
    assert call["amount"] == "0.24"
    assert (call["wholesale"]["amount"], call["wholesale"]["quantity"]) == ("0.07", 90)
    assert call["margin"] == "0.17"
    assert call["wholesale_note"] is None


def test_wholesale_of_a_record_made_while_roaming_takes_the_cards_roaming_rate(
    hosted: TenantHandle, bare_line: dict[str, Any]
) -> None:
    card_id = rate_card(
        hosted.api,
        ("2026-01-01", [rate_line(price="0.03"), rate_line(price="0.15", roaming="eu")]),
        purpose="wholesale",
        agreement="nag_sim_fr",
    )

    at_home, in_germany, in_the_us = rated(
        hosted.api,
        voice("h1", bare_line, 60),
        voice("e1", bare_line, 60, visited_plmn="26201"),
        voice("w1", bare_line, 60, visited_plmn="310410"),
    )

    assert (at_home["wholesale"]["amount"], at_home["wholesale"]["roaming_rate"]) == ("0.03", None)
    assert (in_germany["wholesale"]["amount"], in_germany["wholesale"]["roaming_rate"]) == ("0.15", "eu")
    # No world line on the card: the home rate, as before roaming lines existed.
    assert (in_the_us["wholesale"]["amount"], in_the_us["wholesale"]["roaming_rate"]) == ("0.03", None)
    quoted = hosted.api.post(
        f"/v1/rate-cards/{card_id}/quote",
        {"service": "voice", "called": CALLED, "started_at": at(bare_line), "quantity": 60, "roaming": "eu"},
    )
    assert (quoted.json["amount"], quoted.json["line"]["roaming"], quoted.json["roaming"]) == ("0.150000", "eu", "eu")


def test_a_retail_card_refuses_roaming_lines_line_by_line(tenant: TenantHandle) -> None:
    card = tenant.api.post("/v1/rate-cards", {"name": "Retail", "purpose": "retail"})
    version = tenant.api.post(
        f"/v1/rate-cards/{card.json['id']}/versions",
        {"effective_from": "2026-01-01", "lines": [rate_line(), rate_line(roaming="eu")]},
    )

    assert (version.status_code, version.json["code"]) == (422, "rate_card_rejected"), version.json
    assert [(e["line"], e["code"]) for e in version.json["errors"]["lines"]] == [(2, "roaming_on_retail_card")]


def test_without_a_wholesale_card_the_explanation_says_so(tenant: TenantHandle, bare_line: dict[str, Any]) -> None:
    (call,) = rated(tenant.api, voice("c1", bare_line, 60))

    assert (call["wholesale"], call["margin"]) == (None, None)
    assert "no wholesale rate card" in call["wholesale_note"]


def test_a_wholesale_card_needs_its_host_network(tenant: TenantHandle) -> None:
    refused = tenant.api.post("/v1/rate-cards", {"name": "Wholesale", "purpose": "wholesale"})

    assert (refused.status_code, refused.json["code"]) == (422, "invalid_rate_card")


def test_the_balances_endpoint_shows_each_bucket_and_the_subscriber_sees_the_same(
    app: Flask, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    rated(tenant.api, data("d1", line, 250 * MB), voice("v1", line, 60))

    shown = tenant.api.get(f"/v1/subscriptions/{line['id']}/balances")
    subscriber = subscriber_api(app.test_client(), register_app(tenant.api)["id"], tenant.api.get(
        f"/v1/customers/{line['customer']}").json["email"])  # fmt: skip
    mine = subscriber.get("/v1/me/balances")

    assert shown.status_code == 200, shown.json
    by_service = {b["service"]: b for b in shown.json["buckets"]}
    assert sorted(by_service) == ["data", "sms", "voice"]
    assert {k: by_service["data"][k] for k in ("granted", "used", "remaining", "percent_used", "origin", "zone")} == {
        "granted": 1000 * MB,
        "used": 250 * MB,
        "remaining": 750 * MB,
        "percent_used": "25.00",
        "origin": "plan",
        "zone": "home",
    }
    assert (by_service["voice"]["remaining"], by_service["voice"]["unlimited"]) == (3540, False)
    assert mine.status_code == 200, mine.json
    assert mine.json["lines"] == [shown.json]


def test_re_rating_updates_a_record_not_invoiced_yet_in_place(tenant: TenantHandle, bare_line: dict[str, Any]) -> None:
    (before,) = rated(tenant.api, voice("c1", bare_line, 90))  # 1.5 min x 0.20 by the offer
    rate_card(tenant.api, ("2026-01-01", [rate_line(price="0.50")]))

    run = _rerating_run(tenant.api, dt.datetime.now(PARIS).strftime("%Y-%m"))
    after = explain(tenant.api, before["id"])

    assert (before["amount"], before["rerated_count"]) == ("0.30", 0)
    assert (after["amount"], after["priced_by"], after["rerated_count"]) == ("1.00", "rate_card", 1)
    assert (run["records_changed"], run["adjustments"]) == (1, 0)


def test_a_re_rating_that_leaves_less_allowance_sends_the_threshold_it_crosses(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    rated(tenant.api, data("t1", line, 600 * MB))  # 60 % of 1000 MB: the 50 % event
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        bucket = session.scalars(
            select(BalanceBucket).where(BalanceBucket.subscription_id == line["id"], BalanceBucket.service == "data")
        ).one()
        version = session.get(OfferVersion, bucket.offer_version_id)
        assert version is not None
        # The period's allowance corrected to 700 MB, as a correction applies to the whole period.
        version.allowances = [{**a, "amount": 700} if a["service"] == "data" else a for a in version.allowances]

    _rerating_run(tenant.api, dt.datetime.now(PARIS).strftime("%Y-%m"))

    sent = [
        (e["percent"], e["granted"], e["used"])
        for e in events(runtime, tenant.id, "balance.threshold_reached")
        if e["subscription"] == line["id"]
    ]
    # 600 of 700 MB is 86 %: the 80 % event, once.
    assert sent == [(50, 1000 * MB, 600 * MB), (80, 700 * MB, 600 * MB)]


def plan_version(line: dict[str, Any], version_id: str, *allowances: AllowanceTerm, number: int = 1) -> LineTerms:
    """A 20 EUR plan's terms for the line since 2026, with these allowances and 0.01 a MB beyond."""
    return LineTerms(
        subscription_id=line["id"],
        offer_id=line["offer"],
        offer_version_id=version_id,
        version_number=number,
        currency="EUR",
        price=Decimal(20),
        tax_category="standard",
        allowances=allowances,
        usage_prices={"home": {"data": Decimal("0.01")}},
        rate_card_id=None,
        valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def test_a_periods_plan_buckets_are_made_once_with_a_rollover_of_what_the_last_one_left(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    data_with_rollover = AllowanceTerm(service="data", zone="home", quantity=1000 * MB, rollover_cap=300 * MB)
    unlimited_voice = AllowanceTerm(service="voice", zone="home", quantity=None, fair_use=6000)
    terms = plan_version(line, "ofv_rollover", data_with_rollover, unlimited_voice, number=2)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        owner = session.get(Tenant, tenant.id)
        assert owner is not None
        timeline = {line["id"]: TermsTimeline([terms])}
        ensure_plan_buckets(session, owner, {(line["id"], "2026-09")}, timeline)
        session.execute(update(BalanceBucket).where(BalanceBucket.origin_key == "plan:2026-09:data:home").values(
            used=900 * MB))  # fmt: skip
        for _ in range(2):  # made once, however often asked
            ensure_plan_buckets(session, owner, {(line["id"], "2026-10")}, timeline)
        made = {
            b.origin_key: (b.granted, b.fair_use, b.priority, b.offer_version_id)
            for b in session.scalars(select(BalanceBucket).where(BalanceBucket.subscription_id == line["id"]))
        }

    assert made == {
        "plan:2026-09:data:home": (1000 * MB, None, 100, "ofv_rollover"),
        "plan:2026-09:voice:home": (None, 6000, 100, "ofv_rollover"),
        "plan:2026-10:data:home": (1000 * MB, None, 100, "ofv_rollover"),
        "plan:2026-10:voice:home": (None, 6000, 100, "ofv_rollover"),
        # 100 MB left in September (under the 300 MB cap), consumed before October's own.
        "rollover:2026-10:data:home": (100 * MB, None, 99, "ofv_rollover"),
    }


def test_a_period_the_line_used_nothing_of_rolls_over_its_whole_allowance_up_to_the_cap(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    data_with_rollover = AllowanceTerm(service="data", zone="home", quantity=1000 * MB, rollover_cap=300 * MB)
    terms = plan_version(line, "ofv_idle", data_with_rollover)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        owner = session.get(Tenant, tenant.id)
        assert owner is not None
        # Active since 20 October, nothing used then: no bucket of October was ever made.
        session.execute(update(Subscription).where(Subscription.id == line["id"]).values(
            activated_at=dt.datetime(2026, 10, 20, tzinfo=dt.UTC)))  # fmt: skip
        timeline = {line["id"]: TermsTimeline([terms])}
        ensure_plan_buckets(session, owner, {(line["id"], "2026-11")}, timeline)
        idle = buckets_of(session, line["id"])
        session.execute(delete(BalanceBucket).where(BalanceBucket.subscription_id == line["id"]))
        # A batch with records of October and November makes October's bucket now: its use will decide.
        ensure_plan_buckets(session, owner, {(line["id"], "2026-10"), (line["id"], "2026-11")}, timeline)
        both = buckets_of(session, line["id"])
        session.execute(update(BalanceBucket).where(BalanceBucket.origin_key == "plan:2026-10:data:home").values(
            used=900 * MB))  # fmt: skip
        session.execute(delete(BalanceBucket).where(BalanceBucket.origin_key == "plan:2026-11:data:home"))
        ensure_plan_buckets(session, owner, {(line["id"], "2026-11")}, timeline)
        used = buckets_of(session, line["id"])

    # October rolls over its whole 1000 MB, up to the 300 MB cap; September, before the line, nothing.
    assert idle == {"plan:2026-11:data:home": 1000 * MB, "rollover:2026-11:data:home": 300 * MB}
    assert both == {"plan:2026-10:data:home": 1000 * MB, "plan:2026-11:data:home": 1000 * MB}
    assert used["rollover:2026-11:data:home"] == 100 * MB


def test_plan_buckets_are_looked_up_once_committed_and_made_again_after_a_rollback(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    terms = plan_version(line, "ofv_once", AllowanceTerm(service="data", zone="home", quantity=1000 * MB))
    timeline = {line["id"]: TermsTimeline([terms])}
    asked = {(line["id"], "2026-08")}

    def fail_after_making_them() -> None:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            ensure_plan_buckets(session, session.get(Tenant, tenant.id), asked, timeline)  # type: ignore[arg-type]
            raise RuntimeError("the batch failed after making its buckets")

    with pytest.raises(RuntimeError):
        fail_after_making_them()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", seen)
    try:
        for _ in range(2):
            with runtime.db.transaction(tenant_id=tenant.id) as session:
                statements.clear()
                ensure_plan_buckets(session, session.get(Tenant, tenant.id), asked, timeline)  # type: ignore[arg-type]
                touching = [s for s in statements if "balance_buckets" in s]
                made = buckets_of(session, line["id"])
            # Made again after the rollback; once committed, known without asking the database.
            assert made == {"plan:2026-08:data:home": 1000 * MB}
        assert touching == []
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", seen)


def buckets_of(session: Session, sub_id: str) -> dict[str, int | None]:
    return {
        b.origin_key: b.granted
        for b in session.scalars(select(BalanceBucket).where(BalanceBucket.subscription_id == sub_id))
    }
