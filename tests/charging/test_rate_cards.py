"""Rate cards through the API: versions of lines in JSON or CSV, all or nothing, publishing, quotes, isolation."""

from __future__ import annotations

from typing import Any

from tests.support.api import ApiCaller, TenantHandle

HEADER = (
    "prefix,zone,service,connect_fee,price,first_increment,next_increment,time_band,zero_rated,premium,premium_cap\n"
)
GOOD_CSV = HEADER + (
    "33,France,voice,0.00,0.10,60,60,,false,false,\n"
    "336,France mobile,voice,0.02,0.12,30,6,,false,false,\n"
    "112,Emergency,voice,0,0,1,1,,true,false,\n"
    "3389,Premium,voice,0.50,1.20,1,1,,false,true,5.00\n"
    "*,Anywhere,data,0,0.010,100,100,,false,false,\n"
)
LINE = {"prefix": "33", "zone": "France", "service": "voice", "price": "0.10", "first_increment": 60,
        "next_increment": 60}  # fmt: skip


def new_card(api: ApiCaller, **changes: Any) -> dict[str, Any]:
    body = {"name": "Retail", "rounding_mode": "half_up", "precision": 4, **changes}
    created = api.post("/v1/rate-cards", body)
    assert created.status_code == 201, created.json
    return dict(created.json)


def new_version(api: ApiCaller, card_id: str, **changes: Any) -> Any:
    body = {"effective_from": "2026-04-01", "lines": [LINE], **changes}
    return api.post(f"/v1/rate-cards/{card_id}/versions", body)


def put_csv(api: ApiCaller, card_id: str, version_id: str, text: str, content_type: str = "text/csv") -> Any:
    return api.client.put(
        f"/v1/rate-cards/{card_id}/versions/{version_id}/lines",
        data=text.encode(),
        headers=api.headers({"Content-Type": content_type}),
    )


def lines_of(api: ApiCaller, card_id: str, version_id: str) -> list[dict[str, Any]]:
    listed = api.get(f"/v1/rate-cards/{card_id}/versions/{version_id}/lines", limit=100)
    assert listed.status_code == 200, listed.json
    return list(listed.json["data"])


def test_a_card_is_made_versioned_published_and_quoted(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api, network_agreement_id="nag_sim_fr")
    created = new_version(api, card["id"])
    assert created.status_code == 201, created.json
    version = created.json
    imported = put_csv(api, card["id"], version["id"], GOOD_CSV)
    published = api.post(f"/v1/rate-cards/{card['id']}/versions/{version['id']}/publish")

    quoted = api.post(
        f"/v1/rate-cards/{card['id']}/quote",
        {"service": "voice", "called": "+33612345678", "started_at": "2026-04-01T09:30:00+02:00", "quantity": 61},
    )

    assert (card["currency"], card["rounding_mode"], card["precision"]) == ("EUR", "half_up", 4)
    assert (version["number"], version["status"], version["line_count"]) == (1, "draft", 1)
    assert version["effective_from_at"] == "2026-03-31T22:00:00+00:00"  # local midnight in Paris, summer time
    assert imported.status_code == 200, imported.json
    assert imported.json["line_count"] == 5
    assert published.status_code == 200, published.json
    assert published.json["status"] == "published"
    assert quoted.status_code == 200, quoted.json
    assert quoted.json["line"]["prefix"] == "336"
    assert (quoted.json["billed_quantity"], quoted.json["amount"]) == (66, "0.1520")  # 0.02 + 0.12 x 66 / 60
    assert quoted.json["unrounded_amount"] == "0.152"
    assert quoted.json["version_id"] == version["id"]
    assert "30/6" in quoted.json["explanation"]
    read = api.get(f"/v1/rate-cards/{card['id']}").json
    assert [(v["id"], v["status"], v["line_count"]) for v in read["versions"]] == [(version["id"], "published", 5)]
    assert read["network_agreement_id"] == "nag_sim_fr"
    assert [c["id"] for c in api.get("/v1/rate-cards").json["data"]] == [card["id"]]
    events = api.get("/v1/events", limit=100).get_data(as_text=True)
    assert "rate_card_version.published" in events
    assert "rate_card_version.lines_imported" in events


def test_lines_are_listed_a_page_at_a_time_by_service_and_prefix(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    version = new_version(api, card["id"]).json
    assert put_csv(api, card["id"], version["id"], GOOD_CSV).status_code == 200
    path = f"/v1/rate-cards/{card['id']}/versions/{version['id']}/lines"

    first = api.get(path, limit=3).json
    rest = api.get(path, limit=3, starting_after=first["data"][-1]["id"]).json

    shown = [(line["service"], line["prefix"]) for line in first["data"] + rest["data"]]
    assert shown == [("data", "*"), ("voice", "112"), ("voice", "33"), ("voice", "336"), ("voice", "3389")]
    assert (first["has_more"], rest["has_more"]) == (True, False)
    premium = next(line for line in rest["data"] if line["prefix"] == "3389")
    assert (premium["premium"], premium["premium_cap"], premium["time_band"]) == (True, "5.00", None)


def test_a_csv_with_wrong_lines_is_rejected_whole_with_every_bad_line_and_nothing_written(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    version = new_version(api, card["id"]).json
    before = lines_of(api, card["id"], version["id"])
    bad = HEADER + (
        "33,France,voice,0.00,0.10,60,60,,false,false,\n"  # line 2: good
        "33,France again,voice,0.00,0.20,60,60,,false,false,\n"  # line 3: the same prefix twice
        "44,UK,voice,0.00,0.10,0,60,,false,false,\n"  # line 4: an increment of 0
        "4x,UK,voice,0.00,-1,60,60,,false,false,\n"  # line 5: a prefix and a price that are not
        "49,Germany,voice,0.00,0.10,60,60,peak,false,false,\n"  # line 6: a band the version does not have
        "1,US,voice\n"  # line 7: too few values
    )

    response = put_csv(api, card["id"], version["id"], bad)

    assert response.status_code == 422, response.json
    assert response.json["code"] == "rate_card_rejected"
    found = [(e["line"], e["field"], e["code"]) for e in response.json["errors"]["lines"]]
    assert found == [
        (3, "prefix", "overlapping_prefix"),
        (4, "first_increment", "invalid_increment"),
        (5, "prefix", "invalid_prefix"),
        (5, "price", "invalid_price"),
        (6, "time_band", "unknown_time_band"),
        (7, "line", "wrong_column_count"),
    ]
    assert response.json["errors"]["total"] == 6
    assert all(e["detail"] for e in response.json["errors"]["lines"])
    assert lines_of(api, card["id"], version["id"]) == before
    assert api.get(f"/v1/rate-cards/{card['id']}/versions/{version['id']}").json["line_count"] == 1


def test_a_csv_without_the_needed_columns_or_not_csv_at_all_is_refused(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    version = new_version(api, card["id"]).json

    missing = put_csv(api, card["id"], version["id"], "prefix,zone,service,price,colour\n33,F,voice,0.1,red\n")
    not_utf8 = api.client.put(
        f"/v1/rate-cards/{card['id']}/versions/{version['id']}/lines",
        data=HEADER.encode() + b"33,Fran\xe7e,voice,0,0.1,60,60,,,,\n",
        headers=api.headers({"Content-Type": "text/csv"}),
    )
    as_json = put_csv(api, card["id"], version["id"], GOOD_CSV, content_type="application/json")

    assert missing.status_code == 422, missing.json
    codes = {(e["field"], e["code"]) for e in missing.json["errors"]["lines"]}
    assert codes == {
        ("colour", "unknown_column"),
        ("first_increment", "missing_column"),
        ("next_increment", "missing_column"),
    }
    assert not_utf8.status_code == 422, not_utf8.get_json()
    assert not_utf8.get_json()["errors"]["lines"][0]["code"] == "invalid_encoding"
    assert as_json.status_code in (400, 415), as_json.json
    assert lines_of(api, card["id"], version["id"])[0]["prefix"] == "33"


def test_json_lines_with_a_zero_increment_or_a_prefix_twice_create_no_version(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    lines = [LINE, {**LINE, "zone": "France bis"}, {**LINE, "prefix": "44", "next_increment": 0}]

    response = new_version(api, card["id"], lines=lines)

    assert response.status_code == 422, response.json
    assert response.json["code"] == "rate_card_rejected"
    found = [(e["line"], e["field"], e["code"]) for e in response.json["errors"]["lines"]]
    assert found == [(2, "prefix", "overlapping_prefix"), (3, "next_increment", "invalid_increment")]
    assert api.get(f"/v1/rate-cards/{card['id']}").json["versions"] == []


def test_bad_time_bands_and_dates_are_refused_with_their_reason(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    bands = [
        {"name": "peak", "days": [1, 2, 3, 4, 5], "start": "08:00", "end": "20:00"},
        {"name": "evening", "days": [5], "start": "19:00", "end": "23:00"},
    ]

    overlapping = new_version(api, card["id"], time_bands=bands)
    backwards = new_version(api, card["id"], effective_from="2026-05-01", effective_to="2026-04-01")

    assert overlapping.status_code == 422, overlapping.json
    assert [(e["line"], e["code"]) for e in overlapping.json["errors"]["time_bands"]] == [(2, "invalid_time_band")]
    assert backwards.status_code == 422, backwards.json
    assert backwards.json["code"] == "invalid_effective_dates"
    assert api.get(f"/v1/rate-cards/{card['id']}").json["versions"] == []


def test_a_card_for_another_countrys_host_network_or_an_unknown_one_is_refused(tenant: TenantHandle) -> None:
    response = tenant.api.post("/v1/rate-cards", {"name": "X", "network_agreement_id": "nag_nowhere"})

    assert response.status_code == 422, response.json
    assert response.json["code"] == "invalid_rate_card"
    assert "network_agreement_id" in response.json["errors"]


def test_publishing_a_version_whose_dates_overlap_a_published_one_is_refused(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    spring = new_version(api, card["id"], effective_from="2026-04-01", effective_to="2026-07-01").json
    summer = new_version(api, card["id"], effective_from="2026-06-01").json
    autumn = new_version(api, card["id"], effective_from="2026-07-01", lines=[{**LINE, "price": "0.20"}]).json
    assert api.post(f"/v1/rate-cards/{card['id']}/versions/{spring['id']}/publish").status_code == 200

    refused = api.post(f"/v1/rate-cards/{card['id']}/versions/{summer['id']}/publish")
    accepted = api.post(f"/v1/rate-cards/{card['id']}/versions/{autumn['id']}/publish")

    assert refused.status_code == 409, refused.json
    assert refused.json["code"] == "version_dates_overlap"
    assert "version 1" in refused.json["detail"]
    assert accepted.status_code == 200, accepted.json
    statuses = [(v["number"], v["status"]) for v in api.get(f"/v1/rate-cards/{card['id']}").json["versions"]]
    assert statuses == [(1, "published"), (2, "draft"), (3, "published")]
    # The change at local midnight: 23:59:59 on June 30th in Paris is the old version, 00:00:00 the new one.
    quote = f"/v1/rate-cards/{card['id']}/quote"
    body = {"service": "voice", "called": "+33123456789", "quantity": 60}
    old = api.post(quote, {**body, "started_at": "2026-06-30T23:59:59+02:00"}).json
    new = api.post(quote, {**body, "started_at": "2026-06-30T22:00:00Z"}).json
    assert (old["version_number"], old["amount"]) == (1, "0.1000")
    assert (new["version_number"], new["amount"]) == (3, "0.2000")


def test_a_published_version_never_changes_and_a_draft_can_be_deleted(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    published = new_version(api, card["id"]).json
    draft = new_version(api, card["id"], effective_from="2027-01-01").json
    empty = new_version(api, card["id"], effective_from="2028-01-01", lines=[]).json
    base = f"/v1/rate-cards/{card['id']}/versions"
    assert api.post(f"{base}/{published['id']}/publish").status_code == 200

    again = api.post(f"{base}/{published['id']}/publish")
    reimport = put_csv(api, card["id"], published["id"], GOOD_CSV)
    delete_published = api.request("DELETE", f"{base}/{published['id']}")
    delete_draft = api.request("DELETE", f"{base}/{draft['id']}")
    publish_empty = api.post(f"{base}/{empty['id']}/publish")

    assert again.status_code == 200, again.json
    assert (reimport.status_code, reimport.json["code"]) == (409, "rate_card_version_published")
    assert (delete_published.status_code, delete_published.json["code"]) == (409, "rate_card_version_published")
    assert delete_draft.status_code == 204
    assert api.get(f"{base}/{draft['id']}").status_code == 404
    assert (publish_empty.status_code, publish_empty.json["code"]) == (409, "rate_card_version_empty")
    assert api.get(f"{base}/{published['id']}").json["line_count"] == 1


def test_a_quote_the_card_cannot_price_says_why(tenant: TenantHandle) -> None:
    api = tenant.api
    card = new_card(api)
    version = new_version(api, card["id"]).json
    assert api.post(f"/v1/rate-cards/{card['id']}/versions/{version['id']}/publish").status_code == 200
    quote = f"/v1/rate-cards/{card['id']}/quote"

    too_early = api.post(quote, {"service": "voice", "called": "+33123456789", "started_at": "2026-03-31T21:59:59Z",
                                 "quantity": 60})  # fmt: skip
    abroad = api.post(quote, {"service": "voice", "called": "+4915112345678", "started_at": "2026-05-01T10:00:00Z",
                              "quantity": 60})  # fmt: skip

    assert too_early.status_code == 422, too_early.json
    assert too_early.json["code"] == "event_not_priced"
    assert too_early.json["errors"]["reason"] == ["no_version_in_effect"]
    assert abroad.status_code == 422, abroad.json
    assert abroad.json["errors"]["reason"] == ["no_matching_rate"]


def test_another_tenant_sees_none_of_a_card_its_versions_or_lines(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    card = new_card(tenant.api)
    version = new_version(tenant.api, card["id"]).json
    base = f"/v1/rate-cards/{card['id']}"
    other = other_tenant.api

    answers = [
        other.get(base),
        other.get(f"{base}/versions/{version['id']}"),
        other.get(f"{base}/versions/{version['id']}/lines"),
        other.post(f"{base}/versions/{version['id']}/publish"),
        other.request("DELETE", f"{base}/versions/{version['id']}"),
        new_version(other, card["id"]),
        put_csv(other, card["id"], version["id"], GOOD_CSV),
        other.post(f"{base}/quote", {"service": "voice", "called": "+33123456789",
                                     "started_at": "2026-05-01T10:00:00Z", "quantity": 60}),
    ]  # fmt: skip

    assert [a.status_code for a in answers] == [404] * len(answers)
    assert other.get("/v1/rate-cards").json["data"] == []
    assert tenant.api.get(f"{base}/versions/{version['id']}").json["status"] == "draft"
    assert len(lines_of(tenant.api, card["id"], version["id"])) == 1
