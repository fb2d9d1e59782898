"""MMS, metered like SMS: allowances in messages, a price per message beyond, rate card lines, usage files, invoices.

An offer that states no MMS price gives no MMS away: beyond its allowance (none by default) an MMS is rejected
(`no_rate`), kept to be fixed and re-rated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mvne.infra.runtime import Runtime
from mvne.provisioning.usage_files import UsageFileRecord, iter_usage_file
from tests.charging.test_rating_scenarios import (
    CALLED,
    _billing_run,
    _periods_back,
    at,
    hosted,  # noqa: F401 (a fixture)
    line,  # noqa: F401 (a fixture)
    line_on,
    rate_card,
    rate_line,
    rated,
    send,
)
from tests.support.api import OFFER, TenantHandle, backdate_line

WITH_MMS = {
    "allowances": {**OFFER["allowances"], "mms": 2},
    "overage": {**OFFER["overage"], "mms_per_message": "0.30"},
}


def mms(record_id: str, sub: dict[str, Any], **changes: Any) -> dict[str, Any]:
    record = {"record_id": record_id, "subscription": sub["id"], "service": "mms", "started_at": at(sub),
              "called_number": CALLED}  # fmt: skip
    return {**record, **changes}


def test_mms_are_drawn_from_their_allowance_then_priced_per_message(tenant: TenantHandle) -> None:
    sub = line_on(tenant.api, **WITH_MMS)

    first, second, third = rated(tenant.api, mms("m1", sub), mms("m2", sub), mms("m3", sub))

    assert [(r["quantity"], r["unit"], r["allowance"]["used"], r["amount"]) for r in (first, second, third)] == [
        (1, "messages", 1, "0.00"),
        (1, "messages", 1, "0.00"),
        (1, "messages", 0, "0.30"),
    ]
    assert (third["priced_by"], third["offer"]["overage_price"], third["offer"]["priced_unit"]) == (
        "usage_price",
        "0.30",
        "message",
    )
    (bucket,) = [b for b in tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances").json["buckets"]
                 if b["service"] == "mms"]  # fmt: skip
    assert (bucket["granted"], bucket["used"], bucket["remaining"]) == (2, 2, 0)
    offer = tenant.api.get(f"/v1/offers/{sub['offer']}").json
    assert (offer["allowances"]["mms"], offer["overage"]["mms_per_message"]) == (2, "0.30")


def test_an_offer_that_prices_no_mms_rejects_an_mms_beyond_its_allowance(
    tenant: TenantHandle,
    line: dict[str, Any],  # noqa: F811 (the fixture)
) -> None:
    result = send(tenant.api, mms("m1", line))

    (rejected,) = result["rejected"]
    assert rejected["code"] == "no_rate"
    assert "prices no mms" in rejected["reason"]
    offer = tenant.api.get(f"/v1/offers/{line['offer']}").json
    assert (offer["allowances"]["mms"], offer["overage"]["mms_per_message"]) == (0, None)
    # Kept, to be fixed (or the offer given an MMS price) and re-rated.
    listed = tenant.api.get("/v1/usage-rejections").json["data"]
    assert [(r["record_id"], r["reason_code"]) for r in listed] == [("m1", "no_rate")]


def test_a_wholesale_card_prices_mms_by_the_message_and_refuses_other_increments(
    hosted: TenantHandle,  # noqa: F811 (the fixture)
) -> None:
    sub = line_on(hosted.api, **WITH_MMS)
    rate_card(
        hosted.api,
        ("2026-01-01", [rate_line(service="mms", price="0.04", first_increment=1, next_increment=1)]),
        purpose="wholesale",
        agreement="nag_sim_fr",
    )

    (record,) = rated(hosted.api, mms("w1", sub))

    wholesale = record["wholesale"]
    assert (wholesale["amount"], wholesale["unit_price"], wholesale["quantity"]) == ("0.04", "0.04", 1), wholesale
    card = hosted.api.post("/v1/rate-cards", {"name": "By the minute", "purpose": "retail"})
    version = hosted.api.post(
        f"/v1/rate-cards/{card.json['id']}/versions",
        {"effective_from": "2026-01-01", "lines": [rate_line(service="mms")]},  # increments of 60
    )
    assert (version.status_code, version.json["code"]) == (422, "rate_card_rejected"), version.json
    assert {e["code"] for e in version.json["errors"]["lines"]} == {"invalid_increment"}


def test_a_usage_file_counts_an_mms_as_one_message() -> None:
    header = "record_id,imsi,msisdn,service,started_at,duration_s,volume_bytes,called_number,visited_plmn,rating_group"
    text = [header, "f1,,+33612345678,mms,2026-03-01T10:00:00Z,,,+33698765432,,"]

    ((number, record),) = list(iter_usage_file(f"{row}\n".encode() for row in text))

    assert isinstance(record, UsageFileRecord)
    assert (number, record.service, record.quantity, record.called_number) == (2, "mms", 1, "+33698765432")


def test_mms_beyond_the_allowance_is_a_line_of_its_own_on_the_invoice(runtime: Runtime, tenant: TenantHandle) -> None:
    period, start = _periods_back(1)
    sub = line_on(tenant.api, **WITH_MMS)
    backdate_line(runtime, sub["id"], start)
    when = (start + dt.timedelta(days=3)).isoformat()
    rated(tenant.api, *(mms(f"i{n}", sub, started_at=when) for n in range(5)))  # 2 included, 3 at 0.30

    _billing_run(tenant.api, period)

    (invoice,) = [i for i in tenant.api.get("/v1/invoices", customer=sub["customer"]).json["data"]
                  if i["period"] == period]  # fmt: skip
    (mms_line,) = [item for item in invoice["lines"] if item["kind"] == "overage_mms"]
    assert (mms_line["description"], mms_line["quantity"], mms_line["unit"], mms_line["amount"]) == (
        f"MMS beyond allowance ({sub['msisdn']})",
        "3.00",
        "MMS",
        "0.90",
    )
