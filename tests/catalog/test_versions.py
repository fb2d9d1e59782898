"""Offer versions: immutable once published, in force from a local midnight, moving lines as their policy says."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mvne.catalog.models import SubscriptionTerm
from mvne.catalog.terms import line_terms
from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from tests.platform.problems import assert_problem
from tests.support.api import ApiCaller, TenantHandle, active_subscription, customer, published_offer

PARIS = ZoneInfo("Europe/Paris")
MB = 1_000_000


def today_paris() -> dt.date:
    return dt.datetime.now(PARIS).date()


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(dt.UTC)


def next_month_start(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def version_body(price: str, data_mb: int, effective_from: dt.date, policy: str, **extra: Any) -> dict[str, Any]:
    return {
        "price": price,
        "allowances": [
            {"service": "data", "zone": "home", "amount": data_mb, "roam_like_at_home": True},
            {"service": "voice", "zone": "home", "unlimited": True, "fair_use_amount": 3000},
        ],
        "usage_prices": {"home": {"data": "0.01", "voice": "0.20", "sms": "0.10"}},
        "effective_from": effective_from.isoformat(),
        "existing_subscribers": policy,
        **extra,
    }


def new_version(api: ApiCaller, offer_id: str, body: dict[str, Any]) -> dict[str, Any]:
    created = api.post(f"/v1/offers/{offer_id}/versions", body)
    assert created.status_code == 201, created.json
    published = api.post(f"/v1/offers/{offer_id}/versions/{created.json['id']}/publish")
    assert published.status_code == 200, published.json
    return dict(published.json)


def timeline(runtime: Runtime, tenant: TenantHandle, sub_id: str) -> Any:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        return line_terms(session, [sub_id])[sub_id]


def test_the_old_offer_body_makes_a_draft_version_1_and_the_response_shows_its_terms(tenant: TenantHandle) -> None:
    created = tenant.api.post(
        "/v1/offers",
        {
            "code": "OLD",
            "name": "Old body",
            "price": "20.00",
            "allowances": {"data_mb": 1000, "voice_minutes": 60, "sms": 10},
            "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
        },
    )
    assert created.status_code == 201, created.json
    offer = created.json
    assert (offer["status"], offer["kind"], offer["price"]) == ("draft", "plan", "20.00")
    # MMS left out of the body: none included, and none priced (null) rather than given away.
    assert offer["allowances"] == {"data_mb": 1000, "voice_minutes": 60, "sms": 10, "mms": 0}
    assert offer["overage"]["mms_per_message"] is None
    assert offer["overage"]["voice_per_minute"] == "0.20"
    assert (offer["current_version"]["number"], offer["current_version"]["status"]) == (1, "draft")

    published = tenant.api.post(f"/v1/offers/{offer['id']}/publish").json
    version = published["current_version"]
    assert (version["status"], version["effective_from"]) == ("published", today_paris().isoformat())
    assert version["effective_from_at"].startswith(midnight(today_paris()).strftime("%Y-%m-%dT%H:%M"))


def test_on_date_moves_lines_at_local_midnight_old_terms_before_new_after(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    offer = published_offer(tenant.api, code="MOVE")
    line = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    tomorrow = today_paris() + dt.timedelta(days=1)

    v2 = new_version(tenant.api, offer["id"], version_body("25.00", 5000, tomorrow, "on_date"))

    terms = timeline(runtime, tenant, line["id"])
    just_before = terms.at(midnight(tomorrow) - dt.timedelta(seconds=1))
    just_after = terms.at(midnight(tomorrow))
    assert just_before.version_number == 1
    assert just_before.price == Decimal("20")
    assert just_after.offer_version_id == v2["id"]
    data = next(a for a in just_after.allowances if a.service == "data")
    assert (data.quantity, data.roam_like_at_home) == (5000 * MB, True)
    voice = next(a for a in just_after.allowances if a.service == "voice")
    assert (voice.quantity, voice.fair_use) == (None, 3000 * 60)
    # A line sold before the date starts on version 1 and moves at the same midnight.
    later = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    assert timeline(runtime, tenant, later["id"]).at(midnight(tomorrow)).offer_version_id == v2["id"]


def test_keep_leaves_lines_on_their_terms_and_at_renewal_moves_them_at_the_next_period(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    offer = published_offer(tenant.api, code="KEEP")
    line = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    tomorrow = today_paris() + dt.timedelta(days=1)
    new_version(tenant.api, offer["id"], version_body("21.00", 2000, tomorrow, "keep"))

    far = midnight(tomorrow) + dt.timedelta(days=400)
    assert timeline(runtime, tenant, line["id"]).at(far).version_number == 1

    after = tomorrow + dt.timedelta(days=1)
    v3 = new_version(tenant.api, offer["id"], version_body("22.00", 3000, after, "at_renewal"))
    renewal = after if after.day == 1 else next_month_start(after)
    terms = timeline(runtime, tenant, line["id"])
    assert terms.at(midnight(renewal) - dt.timedelta(seconds=1)).version_number == 1
    assert terms.at(midnight(renewal)).offer_version_id == v3["id"]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        rows = session.scalars(select(SubscriptionTerm).where(SubscriptionTerm.subscription_id == line["id"])).all()
    assert sorted((r.valid_to is None) for r in rows) == [False, True]


def test_a_published_version_never_changes_and_dates_must_move_forward(tenant: TenantHandle) -> None:
    offer = published_offer(tenant.api, code="IMM")
    v1 = offer["current_version"]
    path = f"/v1/offers/{offer['id']}/versions"

    assert_problem(tenant.api.request("PATCH", f"{path}/{v1['id']}", {"price": "1.00"}), 409, "version_immutable")
    assert_problem(tenant.api.request("DELETE", f"{path}/{v1['id']}"), 409, "version_immutable")

    tomorrow = today_paris() + dt.timedelta(days=1)
    v2 = new_version(tenant.api, offer["id"], version_body("25.00", 5000, tomorrow + dt.timedelta(days=1), "keep"))
    assert tenant.api.get(f"{path}/{v1['id']}").json["effective_to_at"] == v2["effective_from_at"]

    draft = tenant.api.post(path, version_body("26.00", 5000, tomorrow, "keep")).json
    assert_problem(tenant.api.post(f"{path}/{draft['id']}/publish"), 409, "version_dates_overlap")
    past = tenant.api.request("PATCH", f"{path}/{draft['id']}", {"effective_from": "2001-01-01"})
    assert past.status_code == 200, past.json
    assert_problem(tenant.api.post(f"{path}/{draft['id']}/publish"), 422, "version_effective_in_past")
    edited = tenant.api.request("PATCH", f"{path}/{draft['id']}", {"price": "27.50"})
    assert edited.json["price"] == "27.50"
    assert tenant.api.request("DELETE", f"{path}/{draft['id']}").status_code == 204
    assert [v["number"] for v in tenant.api.get(path).json] == [1, 2]
    # The offer shows the version in force now: still version 1.
    assert tenant.api.get(f"/v1/offers/{offer['id']}").json["current_version"]["number"] == 1


def test_an_unknown_rate_card_is_refused(tenant: TenantHandle) -> None:
    offer = published_offer(tenant.api, code="RC")
    body = version_body("25.00", 5000, today_paris() + dt.timedelta(days=1), "keep")
    body["rate_card_id"] = "rcd_01J0000000000000000000000X"
    assert_problem(tenant.api.post(f"/v1/offers/{offer['id']}/versions", body), 422, "rate_card_not_found")


def test_a_retired_offer_is_no_longer_sold_and_its_lines_keep_their_terms(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    offer = published_offer(tenant.api, code="RET")
    account = customer(tenant.api)
    line = active_subscription(tenant.api, account["id"], offer["id"])

    retired = tenant.api.post(f"/v1/offers/{offer['id']}/retire")
    assert (retired.status_code, retired.json["status"]) == (200, "retired")

    refused = tenant.api.post(
        "/v1/subscriptions", {"customer": account["id"], "offer": offer["id"], "sim_type": "esim"}
    )
    assert_problem(refused, 409, "offer_retired")
    assert timeline(runtime, tenant, line["id"]).at(dt.datetime.now(dt.UTC)).version_number == 1


def test_nonsense_terms_are_refused_with_stable_codes(tenant: TenantHandle) -> None:
    offer = published_offer(tenant.api, code="BAD")
    path = f"/v1/offers/{offer['id']}/versions"
    day = today_paris() + dt.timedelta(days=1)

    def with_allowance(**allowance: Any) -> Any:
        body = version_body("1.00", 1, day, "keep")
        body["allowances"] = [{"service": "data", "zone": "home", **allowance}]
        return tenant.api.post(path, body)

    assert_problem(with_allowance(amount=-1), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=10**12), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=1, zone="mars"), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=1, service="fax"), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=1, fair_use_amount=10), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=1, zone="eu", roam_like_at_home=True), 422, "invalid_allowance")
    assert_problem(with_allowance(amount=1, service="da\u0000ta"), 422, "validation_failed")
    bad_price = version_body("1.00", 1, day, "keep")
    bad_price["usage_prices"]["home"]["data"] = "-0.01"
    assert tenant.api.post(path, bad_price).status_code == 422
    nul = tenant.api.post("/v1/offers", {**version_body("1", 1, day, "keep"), "code": "A\u0000"})
    assert nul.status_code == 422
    absurd = version_body("99999999.00", 1, day, "keep")
    assert_problem(tenant.api.post(path, absurd), 422, "invalid_offer_terms")
    addon = tenant.api.post(
        "/v1/offers",
        {
            "code": "ADDON-NO-DAYS",
            "name": "No validity",
            "kind": "addon",
            "price": "5.00",
            "allowances": {"data_mb": 1000},
            "overage": {"data_per_mb": "0", "voice_per_minute": "0", "sms_per_message": "0"},
        },
    )
    assert_problem(addon, 422, "invalid_offer_terms")


def test_a_line_written_without_terms_follows_the_offers_published_versions(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    offer = published_offer(tenant.api, code="BULK")
    account = customer(tenant.api)
    tomorrow = today_paris() + dt.timedelta(days=1)
    v2 = new_version(tenant.api, offer["id"], version_body("25.00", 5000, tomorrow, "keep"))
    line_id = new_id("sub")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        # As a line imported in bulk from another platform would be: no terms rows.
        session.add(
            Subscription(id=line_id, customer_id=account["id"], offer_id=offer["id"], sim_type="esim", status="active")
        )

    terms = timeline(runtime, tenant, line_id)
    assert terms.at(midnight(tomorrow) - dt.timedelta(seconds=1)).version_number == 1
    assert terms.at(midnight(tomorrow)).offer_version_id == v2["id"]
