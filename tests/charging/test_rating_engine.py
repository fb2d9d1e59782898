"""The rating engine on its own: buckets consumed, overage priced, wholesale beside it; each figure worked by hand."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mvne.catalog.terms import LineTerms
from mvne.charging import engine, ratecards
from mvne.charging.engine import Bucket, Pricing, Usage
from mvne.charging.zones import EU, HOME, WORLD, zone_of

PARIS = ZoneInfo("Europe/Paris")
START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
NOON = dt.datetime(2026, 5, 6, 10, 0, tzinfo=dt.UTC)  # a Wednesday, 12:00 in Paris
MB = 1_000_000


def terms(**prices: dict[str, str]) -> LineTerms:
    usage_prices = {"home": {"data": Decimal("0.01"), "voice": Decimal("0.20"), "sms": Decimal("0.10")}}
    for zone, by_service in prices.items():
        usage_prices[zone] = {service: Decimal(value) for service, value in by_service.items()}
    return LineTerms(
        subscription_id="sub_1",
        offer_id="off_1",
        offer_version_id="ofv_1",
        version_number=1,
        currency="EUR",
        price=Decimal(20),
        tax_category="standard",
        allowances=(),
        usage_prices=usage_prices,
        rate_card_id=None,
        valid_from=START,
    )


def bucket(bucket_id: str, granted: int | None, service: str = "voice", zone: str = HOME, **changes: Any) -> Bucket:
    values: dict[str, Any] = {
        "id": bucket_id,
        "subscription_id": "sub_1",
        "service": service,
        "zone": zone,
        "origin": "plan",
        "granted": granted,
        "used": 0,
        "valid_from": START,
        "valid_to": END,
    }
    values.update(changes)
    return Bucket(**values)


def rate_line(prefix: str = "*", service: str = "voice", **changes: Any) -> ratecards.RateLine:
    values: dict[str, Any] = {
        "prefix": prefix,
        "zone": "France",
        "service": service,
        "connect_fee": Decimal(0),
        "price": Decimal("0.12"),
        "first_increment": 60,
        "next_increment": 60,
    }
    values.update(changes)
    return ratecards.RateLine(**values)


def card(lines: Sequence[ratecards.RateLine], *, version_id: str = "rcv_1", precision: int = 6) -> Any:
    return ratecards.CompiledCard(
        "EUR", "half_up", precision, [ratecards.compile_version(lines, [], PARIS, version_id=version_id)]
    )


def voice(seconds: int, zone: str = HOME, called: str | None = "+33612345678") -> Usage:
    return Usage(service="voice", started_at=NOON, quantity=seconds, zone=zone, called_number=called)


def retail_card(*lines: ratecards.RateLine) -> Pricing:
    return Pricing(cards={"rcd_retail": card(lines)}, default_retail_id="rcd_retail")


def test_an_allowance_used_exactly_to_its_end_leaves_nothing_and_the_next_second_is_overage() -> None:
    minutes = bucket("bkt_1", 600)

    first = engine.rate(voice(600), terms(), [minutes], Pricing())
    second = engine.rate(voice(1), terms(), [minutes], Pricing())

    assert (first.allowance_used, first.overage_quantity, first.retail.amount) == (600, 0, Decimal(0))
    assert first.parts == [("bkt_1", 600)]
    assert first.allowance_before == 600
    assert minutes.used == 600
    # 1 s at 0.20 per minute, pro rata: 0.20 / 60 = 0.003333..., rounded half-up to 6 decimals.
    assert (second.allowance_used, second.overage_quantity) == (0, 1)
    assert second.retail.amount == Decimal("0.003333")
    assert second.parts == []


def test_a_call_split_between_allowance_and_overage_prices_the_overage_alone_without_the_connect_fee() -> None:
    pricing = retail_card(rate_line(connect_fee=Decimal("0.05")))
    minutes = bucket("bkt_1", 60)

    split = engine.rate(voice(100), terms(), [minutes], pricing)
    whole = engine.rate(voice(100), terms(), [bucket("bkt_2", 0)], pricing)

    # 60 s from the allowance; the 40 s beyond are an event of their own: 60/60 bills 60 s = 0.12, no fee.
    assert (split.allowance_used, split.overage_quantity) == (60, 40)
    assert (split.retail.billed_quantity, split.retail.amount, split.retail.connect_fee) == (60, Decimal("0.12"), False)
    # Nothing covered: 100 s bill 120 s = 0.24, plus the 0.05 connect fee.
    assert (whole.retail.billed_quantity, whole.retail.amount, whole.retail.connect_fee) == (120, Decimal("0.29"), True)


@pytest.mark.parametrize(
    ("first", "following", "billed", "amount"),
    [
        (60, 60, 120, "0.240000"),  # 61 s -> 2 min x 0.12
        (30, 6, 66, "0.132000"),  # 30 + 6 x 6 = 66 s x 0.12 / 60
        (1, 1, 61, "0.122000"),  # 61 s x 0.12 / 60
    ],
)
def test_voice_increments_round_the_overage_up_then_the_amount_once(
    first: int, following: int, billed: int, amount: str
) -> None:
    pricing = retail_card(rate_line(first_increment=first, next_increment=following))

    rated = engine.rate(voice(61), terms(), [], pricing)

    assert (rated.retail.billed_quantity, rated.retail.amount) == (billed, Decimal(amount))


def test_data_is_billed_in_whole_kilobyte_blocks_and_rounded_once_at_the_cards_precision() -> None:
    data_card = ratecards.CompiledCard(
        "EUR",
        "half_up",
        4,
        [
            ratecards.compile_version(
                [rate_line(service="data", price=Decimal("0.013"), first_increment=1, next_increment=1)],
                [],
                PARIS,
                version_id="rcv_d",
            )
        ],
    )
    pricing = Pricing(cards={"rcd": data_card}, default_retail_id="rcd")
    usage = Usage(service="data", started_at=NOON, quantity=1_500, zone=HOME)

    rated = engine.rate(usage, terms(), [], pricing)

    # 1500 bytes -> 2 KB blocks = 2000 bytes; 0.013 per MB x 0.002 MB = 0.000026, rounded to 4 decimals: 0.0000.
    assert rated.retail.billed_quantity == 2_000
    assert rated.retail.exact == Decimal("0.000026")
    assert rated.retail.amount == Decimal("0.0000")


def test_buckets_go_by_priority_then_earliest_expiry_and_a_record_splits_across_them() -> None:
    late = bucket("bkt_a", 100, valid_to=END)
    early = bucket("bkt_b", 50, valid_to=END - dt.timedelta(days=1))
    first = bucket("bkt_c", 30, priority=10)

    rated = engine.rate(voice(200), terms(), [late, early, first], Pricing())

    assert rated.parts == [("bkt_c", 30), ("bkt_b", 50), ("bkt_a", 100)]
    assert (rated.allowance_used, rated.overage_quantity) == (180, 20)


def test_a_bucket_not_valid_at_the_records_start_or_of_another_zone_is_not_consumed() -> None:
    expired = bucket("bkt_old", 100, valid_to=NOON)
    roaming = bucket("bkt_eu", 100, zone=EU)

    rated = engine.rate(voice(10), terms(), [expired, roaming], Pricing())

    assert rated.parts == []
    assert rated.overage_quantity == 10


def test_eu_roaming_uses_the_home_allowance_within_its_fair_use_and_pays_the_eu_surcharge_beyond() -> None:
    home = bucket("bkt_home", 600, roam_like_at_home=True, eu_fair_use=120)
    line = terms(eu={"voice": "0.50"})

    within = engine.rate(voice(100, zone=EU), line, [home], Pricing())
    beyond = engine.rate(voice(60, zone=EU), line, [home], Pricing())

    assert (within.allowance_used, within.overage_quantity) == (100, 0)
    # 20 s left of the EU fair use; the 40 s beyond at the EU price 0.50 per minute = 0.333333.
    assert (beyond.allowance_used, beyond.overage_quantity) == (20, 40)
    assert beyond.retail.amount == Decimal("0.333333")
    assert (home.used, home.eu_used) == (120, 120)
    # At home the same bucket still has 480 s.
    assert engine.rate(voice(480), line, [home], Pricing()).overage_quantity == 0


def test_world_usage_pays_the_world_price_and_never_touches_home_buckets_even_with_a_rate_card() -> None:
    home = bucket("bkt_home", 600, roam_like_at_home=True)
    pricing = retail_card(rate_line())

    rated = engine.rate(voice(60, zone=WORLD), terms(world={"voice": "1.50"}), [home], pricing)
    fallback = engine.rate(voice(60, zone=WORLD), terms(), [home], pricing)

    assert (rated.overage_quantity, rated.retail.amount, rated.retail.version_id) == (60, Decimal("1.50"), None)
    assert fallback.retail.amount == Decimal("0.20")  # no world price: priced as home by the offer
    assert home.used == 0


def test_an_unlimited_bucket_covers_everything_and_throttles_past_its_fair_use_once() -> None:
    unlimited = bucket("bkt_u", None, service="data", fair_use=100 * MB)

    def data(mb: int) -> engine.Rating:
        return engine.rate(Usage("data", NOON, mb * MB), terms(), [unlimited], Pricing())

    below, crossing, beyond = data(90), data(20), data(5)

    assert [r.overage_quantity for r in (below, crossing, beyond)] == [0, 0, 0]
    assert [r.throttled for r in (below, crossing, beyond)] == [False, True, True]
    assert [r.fair_use_reached for r in (below, crossing, beyond)] == [[], ["bkt_u"], []]


def test_zero_rated_and_premium_capped_numbers() -> None:
    pricing = retail_card(
        rate_line(),
        rate_line(prefix="33800", zero_rated=True),
        rate_line(prefix="33899", premium=True, price=Decimal("3.00"), premium_cap=Decimal("5.00")),
    )

    free = engine.rate(voice(600, called="+33800123456"), terms(), [], pricing)
    capped = engine.rate(voice(600, called="+33899123456"), terms(), [], pricing)

    assert (free.retail.amount, free.retail.prefix) == (Decimal(0), "33800")
    # 10 min x 3.00 = 30.00, capped at 5.00.
    assert (capped.retail.amount, capped.retail.prefix) == (Decimal("5.00"), "33899")


def test_a_record_the_card_cannot_price_raises_and_consumes_nothing() -> None:
    pricing = retail_card(rate_line(prefix="44"))
    minutes = bucket("bkt_1", 30)

    with pytest.raises(ratecards.PricingError) as raised:
        engine.rate(voice(100), terms(), [minutes], pricing)

    assert raised.value.code == "no_matching_rate"
    assert minutes.used == 0


def test_wholesale_prices_the_whole_record_and_the_margin_is_retail_minus_wholesale() -> None:
    pricing = Pricing(
        cards={"rcd_w": card([rate_line(price=Decimal("0.03"), connect_fee=Decimal("0.01"))], version_id="rcv_w")},
        wholesale_id="rcd_w",
    )

    rated = engine.rate(voice(90), terms(), [bucket("bkt_1", 60)], pricing)

    assert rated.wholesale is not None
    # All 90 s, 60/60 -> 120 s x 0.03 + 0.01 = 0.07; retail: 30 s beyond at 0.20 / min = 0.10.
    assert (rated.wholesale.amount, rated.wholesale.version_id) == (Decimal("0.07"), "rcv_w")
    assert rated.retail.amount - rated.wholesale.amount == Decimal("0.03")
    assert engine.rate(voice(90), terms(), [], Pricing()).wholesale is None


def test_thresholds_are_the_highest_crossed_and_not_yet_notified() -> None:
    minutes = bucket("bkt_1", 100)

    minutes.used = 55
    assert minutes.threshold_crossed() == 50
    minutes.notified_percent = 50
    minutes.used = 79
    assert minutes.threshold_crossed() is None
    minutes.used = 100
    assert minutes.threshold_crossed() == 100


@pytest.mark.parametrize(
    ("plmn", "zone"),
    [(None, HOME), ("", HOME), ("00101", HOME), ("001-01", HOME), ("26201", EU), ("242-01", EU), ("310410", WORLD)],
)
def test_zones_come_from_the_visited_networks_country(plmn: str | None, zone: str) -> None:
    assert zone_of(plmn, "001") == zone


def test_without_a_host_network_every_visited_network_is_abroad() -> None:
    assert zone_of("20801", None) == EU
