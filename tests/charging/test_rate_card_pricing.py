"""Pricing one event on a compiled rate card: the named scenarios, each computed by hand beside its assertion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvne.charging import ratecards
from mvne.charging.ratecards import CompiledCard, PricingError, RateLine, compile_version, local_midnight, price

PARIS = ZoneInfo("Europe/Paris")
NOON = dt.datetime(2026, 5, 6, 12, 0, tzinfo=PARIS)  # a Wednesday


def line(prefix: str = "33", service: str = "voice", **changes: Any) -> RateLine:
    values: dict[str, Any] = {
        "prefix": prefix,
        "zone": "France",
        "service": service,
        "connect_fee": Decimal(0),
        "price": Decimal("0.10"),
        "first_increment": 60,
        "next_increment": 60,
    }
    values.update(changes)
    return RateLine(**values)


def card(
    lines: Sequence[RateLine],
    *,
    mode: str = "half_up",
    precision: int = 6,
    bands: Sequence[dict[str, Any]] = (),
) -> CompiledCard:
    windows, errors = ratecards.check_time_bands(list(bands))
    assert not errors, errors
    return CompiledCard("EUR", mode, precision, [compile_version(lines, windows, PARIS)])


def voice(compiled: CompiledCard, seconds: int, called: str = "+33612345678", at: dt.datetime = NOON) -> Any:
    return price(compiled, service="voice", called=called, started_at=at, quantity=seconds)


# Increments and rounding -----------------------------------------------------------------------------------


def test_61_seconds_at_60_60_bill_two_whole_minutes() -> None:
    event = voice(card([line(first_increment=60, next_increment=60)]), 61)

    assert event.billed_quantity == 120
    assert event.amount == Decimal("0.200000")  # 0.10/min x 2 min


def test_61_seconds_at_30_6_bill_66_seconds() -> None:
    event = voice(card([line(first_increment=30, next_increment=6)]), 61)

    assert event.billed_quantity == 66  # 30, then 31 s in 6 s steps: 36
    assert event.amount == Decimal("0.110000")  # 0.10 x 66 / 60


def test_a_call_shorter_than_the_first_increment_bills_the_first_increment() -> None:
    event = voice(card([line(first_increment=30, next_increment=6)]), 7)

    assert event.billed_quantity == 30
    assert event.amount == Decimal("0.050000")


def test_61_seconds_at_1_1_bill_61_seconds_rounded_once_with_the_cards_mode() -> None:
    lines = [line(first_increment=1, next_increment=1, price=Decimal("0.10"))]
    exact = Decimal("0.1016666666666666666666666666666666666667")  # 0.10 x 61 / 60

    results = {
        mode: voice(card(lines, mode=mode, precision=4), 61).amount for mode in ("half_up", "half_even", "up", "down")
    }

    assert voice(card(lines), 61).billed_quantity == 61
    assert voice(card(lines), 61).unrounded_amount == exact
    assert results == {
        "half_up": Decimal("0.1017"),
        "half_even": Decimal("0.1017"),
        "up": Decimal("0.1017"),
        "down": Decimal("0.1016"),
    }


def test_a_tie_rounds_away_from_zero_half_up_and_to_even_half_even() -> None:
    # 0.0125/min for 60 s is 0.0125: a tie at 3 decimals.
    lines = [line(price=Decimal("0.0125"))]

    assert voice(card(lines, mode="half_up", precision=3), 60).amount == Decimal("0.013")
    assert voice(card(lines, mode="half_even", precision=3), 60).amount == Decimal("0.012")
    assert voice(card(lines, mode="up", precision=2), 60).amount == Decimal("0.02")
    assert voice(card(lines, mode="down", precision=2), 60).amount == Decimal("0.01")
    assert voice(card(lines, precision=0), 60).amount == Decimal(0)


def test_rounding_applies_to_the_total_never_per_increment() -> None:
    # Per-increment rounding to 2 decimals would bill 60 x round(0.0029) = 60 x 0.00 = 0: the anchors' error.
    lines = [line(first_increment=1, next_increment=1, price=Decimal("0.174"))]

    event = voice(card(lines, precision=2), 60)

    assert event.amount == Decimal("0.17")


def test_a_five_cent_minute_is_five_cents_not_a_float_short() -> None:
    event = voice(card([line(price=Decimal("0.05"))], precision=4), 60)

    assert event.amount == Decimal("0.0500")
    assert str(event.amount) == "0.0500"


def test_data_is_billed_by_blocks_of_kilobytes_and_priced_per_megabyte() -> None:
    lines = [line("*", "data", price=Decimal("0.01"), first_increment=100, next_increment=100)]
    compiled = card(lines)

    event = price(compiled, service="data", called=None, started_at=NOON, quantity=150_001)

    assert event.billed_quantity == 200_000  # bytes: two blocks of 100 KB
    assert event.amount == Decimal("0.002000")  # 0.01/MB x 0.2 MB
    assert event.prefix == "*"


def test_an_sms_costs_its_price_per_message() -> None:
    compiled = card([line(service="sms", price=Decimal("0.07"), first_increment=1, next_increment=1)])

    event = price(compiled, service="sms", called="+33612345678", started_at=NOON, quantity=3)

    assert (event.billed_quantity, event.amount) == (3, Decimal("0.210000"))


# Connect fee, zero-rated and premium numbers ---------------------------------------------------------------


def test_a_connect_fee_is_added_once_to_the_increments() -> None:
    event = voice(card([line(connect_fee=Decimal("0.15"), first_increment=30, next_increment=6)]), 61)

    assert event.amount == Decimal("0.260000")  # 0.15 + 0.10 x 66 / 60
    assert "0.15 connect fee" in event.explanation()


def test_an_unanswered_call_costs_nothing_not_even_the_connect_fee() -> None:
    event = voice(card([line(connect_fee=Decimal("0.15"))]), 0)

    assert (event.billed_quantity, event.amount, event.reason) == (0, Decimal("0.000000"), "nothing_used")


def test_emergency_and_customer_care_numbers_are_zero_rated_with_the_reason() -> None:
    compiled = card(
        [
            line("33", connect_fee=Decimal("0.15")),
            line("112", zone="Emergency", zero_rated=True, price=Decimal(0)),
            line("33800", zone="Customer care", zero_rated=True, price=Decimal("0.10")),
        ]
    )

    emergency = voice(compiled, 600, called="112")
    care = voice(compiled, 600, called="+33800123456")

    assert (emergency.amount, emergency.reason, emergency.zone) == (Decimal("0.000000"), "zero_rated", "Emergency")
    assert (care.amount, care.reason, care.prefix) == (Decimal("0.000000"), "zero_rated", "33800")
    assert voice(compiled, 600, called="+33612345678").amount == Decimal("1.150000")


def test_a_premium_number_is_charged_up_to_its_cap() -> None:
    premium = line("3389", zone="Premium", premium=True, price=Decimal("1.20"), premium_cap=Decimal("5.00"),
                   connect_fee=Decimal("0.50"), first_increment=1, next_increment=1)  # fmt: skip
    compiled = card([line("33"), premium])

    short = voice(compiled, 120, called="+33891234567")
    long = voice(compiled, 3600, called="+33891234567")

    assert (short.amount, short.capped, short.reason) == (Decimal("2.900000"), False, "rated")  # 0.50 + 1.20 x 2
    assert (long.amount, long.capped, long.reason) == (Decimal("5.000000"), True, "premium_capped")
    assert "capped" in long.explanation()


# Longest prefix, time bands ------------------------------------------------------------------------------


def test_the_longest_matching_prefix_wins_and_star_is_the_default() -> None:
    compiled = card(
        [
            line("*", zone="World", price=Decimal("1.00")),
            line("33", zone="France"),
            line("336", zone="France mobile", price=Decimal("0.20")),
            line("3361", zone="France mobile A", price=Decimal("0.30")),
        ]
    )

    assert voice(compiled, 60, called="+33612345678").zone == "France mobile A"
    assert voice(compiled, 60, called="+33712345678").zone == "France"
    assert voice(compiled, 60, called="+33699999999").zone == "France mobile"
    assert voice(compiled, 60, called="+4915112345678").zone == "World"


def test_a_number_without_a_matching_line_is_not_priced() -> None:
    with pytest.raises(PricingError) as refused:
        voice(card([line("33")]), 60, called="+4915112345678")

    assert refused.value.code == "no_matching_rate"


PEAK_BANDS = (
    {"name": "peak", "days": [1, 2, 3, 4, 5], "start": "08:00", "end": "20:00"},
    {"name": "offpeak", "days": [1, 2, 3, 4, 5], "start": "20:00", "end": "24:00"},
    {"name": "offpeak", "days": [1, 2, 3, 4, 5], "start": "00:00", "end": "08:00"},
    {"name": "offpeak", "days": [6, 7], "start": "00:00", "end": "24:00"},
)


def test_a_call_is_rated_in_the_band_of_its_local_start_time() -> None:
    compiled = card(
        [
            line("33", time_band="peak", price=Decimal("0.20")),
            line("33", time_band="offpeak", price=Decimal("0.05")),
        ],
        bands=PEAK_BANDS,
    )
    # 07:59:30 local, a Wednesday: off-peak for the whole ten minutes, though most of it is peak time.
    early = dt.datetime(2026, 5, 6, 5, 59, 30, tzinfo=dt.UTC)

    started_offpeak = voice(compiled, 600, at=early)
    started_peak = voice(compiled, 600, at=early + dt.timedelta(seconds=30))
    saturday = voice(compiled, 600, at=dt.datetime(2026, 5, 9, 12, 0, tzinfo=PARIS))

    assert (started_offpeak.time_band, started_offpeak.amount) == ("offpeak", Decimal("0.500000"))
    assert (started_peak.time_band, started_peak.amount) == ("peak", Decimal("2.000000"))
    assert saturday.time_band == "offpeak"
    assert started_offpeak.local_start.isoformat() == "2026-05-06T07:59:30+02:00"


def test_a_line_without_a_band_serves_the_times_no_banded_line_covers() -> None:
    compiled = card(
        [line("33", price=Decimal("0.10")), line("33", time_band="peak", price=Decimal("0.20"))], bands=PEAK_BANDS
    )

    assert voice(compiled, 60).amount == Decimal("0.200000")
    assert voice(compiled, 60, at=dt.datetime(2026, 5, 9, 12, 0, tzinfo=PARIS)).amount == Decimal("0.100000")


def test_time_bands_that_overlap_or_run_backwards_are_refused() -> None:
    _, overlapping = ratecards.check_time_bands(
        [
            {"name": "peak", "days": [1], "start": "08:00", "end": "20:00"},
            {"name": "evening", "days": [1, 2], "start": "19:00", "end": "23:00"},
        ]
    )
    _, backwards = ratecards.check_time_bands([{"name": "night", "days": [1], "start": "22:00", "end": "06:00"}])

    assert [(e.line, e.code) for e in overlapping] == [(2, "invalid_time_band")]
    assert [(e.line, e.code) for e in backwards] == [(1, "invalid_time_band")]


# Versions at local midnight, across DST -------------------------------------------------------------------


def two_versions(change: dt.date) -> CompiledCard:
    old = compile_version([line(price=Decimal("0.10"))], [], PARIS, version_id="v1", number=1,
                          effective_from=local_midnight(dt.date(2026, 1, 1), PARIS))  # fmt: skip
    new = compile_version([line(price=Decimal("0.20"))], [], PARIS, version_id="v2", number=2,
                          effective_from=local_midnight(change, PARIS))  # fmt: skip
    return CompiledCard("EUR", "half_up", 6, [old, new])


@pytest.mark.parametrize(
    ("change", "offset"),
    [
        (dt.date(2026, 6, 1), "+02:00"),  # summer time
        (dt.date(2027, 3, 28), "+01:00"),  # the night clocks go forward (02:00 -> 03:00): midnight is still CET
        (dt.date(2027, 10, 31), "+02:00"),  # the night clocks go back (03:00 -> 02:00): midnight is still CEST
        (dt.date(2027, 1, 1), "+01:00"),  # winter
    ],
)
def test_a_new_version_applies_from_local_midnight_of_its_first_day(change: dt.date, offset: str) -> None:
    compiled = two_versions(change)
    midnight = dt.datetime.fromisoformat(f"{change.isoformat()}T00:00:00{offset}")

    before = voice(compiled, 60, at=midnight - dt.timedelta(seconds=1))
    at = voice(compiled, 60, at=midnight)

    assert before.local_start.strftime("%H:%M:%S") == "23:59:59"
    assert (before.version_number, before.amount) == (1, Decimal("0.100000"))
    assert (at.version_number, at.amount) == (2, Decimal("0.200000"))
    assert at.local_start.replace(tzinfo=None) == dt.datetime.combine(change, dt.time())
    assert midnight == local_midnight(change, PARIS)


def test_a_version_that_ends_leaves_a_gap_where_nothing_is_priced() -> None:
    only = compile_version([line()], [], PARIS, effective_from=local_midnight(dt.date(2026, 1, 1), PARIS),
                           effective_to=local_midnight(dt.date(2026, 2, 1), PARIS))  # fmt: skip
    compiled = CompiledCard("EUR", "half_up", 6, [only])

    assert voice(compiled, 60, at=dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=PARIS)).version_number == 1
    with pytest.raises(PricingError) as refused:
        voice(compiled, 60, at=dt.datetime(2026, 2, 1, 0, 0, tzinfo=PARIS))
    assert refused.value.code == "no_version_in_effect"


# Lines as imported -------------------------------------------------------------------------------------------


def test_a_version_with_one_prefix_twice_for_a_service_and_band_is_refused_line_by_line() -> None:
    rows = [
        {"prefix": "33", "zone": "France", "service": "voice", "price": "0.10", "first_increment": "60",
         "next_increment": "60"},
        {"prefix": "+33", "zone": "France bis", "service": "voice", "price": "0.20", "first_increment": "60",
         "next_increment": "60"},
        {"prefix": "33", "zone": "France", "service": "sms", "price": "0.10", "first_increment": "1",
         "next_increment": "1"},
        {"prefix": "33x", "zone": "", "service": "fax", "price": "-1", "first_increment": "0", "next_increment": "1.5"},
    ]  # fmt: skip

    report = ratecards.check_lines(enumerate(rows, start=2), set())

    found = [(e.line, e.field, e.code) for e in report.errors]
    assert found == [
        (3, "prefix", "overlapping_prefix"),
        (5, "prefix", "invalid_prefix"),
        (5, "zone", "invalid_zone"),
        (5, "service", "invalid_service"),
        (5, "price", "invalid_price"),
        (5, "first_increment", "invalid_increment"),
        (5, "next_increment", "invalid_increment"),
    ]
    assert report.error_count == 7
    assert [(line.service, line.prefix) for line in report.lines] == [("voice", "33"), ("sms", "33")]


# Properties ----------------------------------------------------------------------------------------------------

increments = st.integers(min_value=1, max_value=3600)
amounts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)


@given(
    quantity=st.integers(min_value=0, max_value=10**9),
    first=increments,
    next_=increments,
    money=st.tuples(amounts, amounts),
    rounding=st.tuples(st.sampled_from(ratecards.ROUNDING_MODES), st.integers(min_value=0, max_value=6)),
)
def test_billed_quantity_covers_the_usage_on_increment_boundaries_and_amounts_never_go_below_zero(
    quantity: int, first: int, next_: int, money: tuple[Decimal, Decimal], rounding: tuple[str, int]
) -> None:
    (price_, fee), (mode, precision) = money, rounding
    compiled = card([line(first_increment=first, next_increment=next_, price=price_, connect_fee=fee)],
                    mode=mode, precision=precision)  # fmt: skip

    event = voice(compiled, quantity)

    billed = event.billed_quantity
    assert billed >= quantity
    assert billed == 0 if quantity == 0 else (billed >= first and (billed - first) % next_ == 0)
    assert billed - quantity < max(first, next_)
    assert event.amount >= 0
    assert event.amount.as_tuple().exponent == -precision
    exact = Decimal(event.numerator) / Decimal(event.denominator)
    assert abs(event.amount - exact) <= Decimal(1).scaleb(-precision)


# Roaming ---------------------------------------------------------------------------------------------------


def test_a_roaming_event_takes_its_zones_roaming_lines_first_then_the_home_lines() -> None:
    compiled = card(
        [
            line("*", zone="Anywhere", price=Decimal("0.05")),
            line("336", zone="France mobile", price=Decimal("0.08")),
            line("*", zone="Anywhere", price=Decimal("0.30"), roaming="eu"),
            line("*", service="data", zone="Anywhere", price=Decimal("0.01"), first_increment=1, next_increment=1),
        ]
    )

    def priced(called: str, roaming: str | None, service: str = "voice") -> tuple[str, str | None, Decimal]:
        event = price(compiled, service=service, called=called, started_at=NOON, quantity=60, roaming=roaming)
        return event.zone, event.line.roaming, event.amount

    # In the EU, the eu roaming line, whatever longer prefix the home lines have.
    assert priced("+33612345678", "eu") == ("Anywhere", "eu", Decimal("0.300000"))
    # At home the roaming line never applies; roaming where the card has no line, the home lines price it.
    assert priced("+33612345678", None) == ("France mobile", None, Decimal("0.080000"))
    assert priced("+33612345678", "world") == ("France mobile", None, Decimal("0.080000"))
    assert priced("", "eu", service="data") == ("Anywhere", None, Decimal("0.000010"))  # 1 KB at 0.01 per MB
    explained = price(compiled, service="voice", called="+4930123", started_at=NOON, quantity=60, roaming="world")
    assert explained.explanation().startswith("Roaming in world: no world roaming rate on the card, the home rate.")
    with pytest.raises(ValueError, match="roaming"):
        price(compiled, service="voice", called="+33612345678", started_at=NOON, quantity=60, roaming="mars")


def test_a_roaming_line_outside_its_band_leaves_the_event_to_the_home_lines() -> None:
    compiled = card(
        [line("*", zone="Home"), line("*", zone="EU peak", price=Decimal("0.50"), time_band="peak", roaming="eu")],
        bands=PEAK_BANDS,
    )
    evening = NOON.replace(hour=21)

    def zone(at: dt.datetime) -> str:
        return price(compiled, service="voice", called="+33612345678", started_at=at, quantity=60, roaming="eu").zone

    assert (zone(NOON), zone(evening)) == ("EU peak", "Home")


def test_roaming_lines_are_checked_and_may_share_a_prefix_with_a_home_line() -> None:
    raw = {"prefix": "33", "zone": "France", "service": "voice", "price": "0.10", "first_increment": "60",
           "next_increment": "60"}  # fmt: skip
    report = ratecards.check_lines(
        enumerate([raw, {**raw, "roaming": "EU"}, {**raw, "roaming": "eu"}, {**raw, "roaming": "moon"}], start=1),
        set(),
    )
    assert [line.roaming for line in report.lines] == [None, "eu"]
    assert [(e.line, e.field, e.code) for e in report.errors] == [
        (3, "prefix", "overlapping_prefix"),
        (4, "roaming", "invalid_roaming"),
    ]
    retail = ratecards.check_lines(enumerate([raw, {**raw, "roaming": "world"}], start=1), set(), roaming_allowed=False)
    assert [(e.line, e.code) for e in retail.errors] == [(2, "roaming_on_retail_card")]
