"""Rating usage against an allowance, with overage priced per MB, minute or message."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvne.charging.rating import RatingResult, Service, allowance_units, price_unit, rate_usage

services = st.sampled_from(list(Service))
quantities = st.integers(min_value=0, max_value=10**12)
prices = st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False)

ONE_MICRO = Decimal("0.000001")


def test_allowances_convert_megabytes_to_bytes_and_minutes_to_seconds() -> None:
    assert allowance_units(Service.DATA, 20_000) == 20_000_000_000
    assert allowance_units(Service.VOICE, 100) == 6_000
    assert allowance_units(Service.SMS, 50) == 50


def test_prices_are_per_megabyte_per_minute_and_per_message() -> None:
    assert [price_unit(s) for s in (Service.DATA, Service.VOICE, Service.SMS)] == [1_000_000, 60, 1]


def test_usage_within_the_allowance_costs_nothing() -> None:
    assert rate_usage(Service.SMS, 3, 10, Decimal("0.10")) == RatingResult(3, 0, Decimal("0.000000"))


def test_usage_beyond_the_allowance_is_charged_per_megabyte() -> None:
    result = rate_usage(Service.DATA, 2_500_000, 1_000_000, Decimal("0.01"))
    assert result == RatingResult(allowance_used=1_000_000, overage_quantity=1_500_000, amount=Decimal("0.015"))


def test_voice_overage_is_charged_per_second_pro_rata() -> None:
    # 61 s beyond the allowance at 0.09 per minute: 0.09 * 61 / 60 = 0.0915
    assert rate_usage(Service.VOICE, 61, 0, Decimal("0.09")).amount == Decimal("0.091500")
    # 1 s at 0.10 per minute is 0.0016666...: half-up to 6 decimals
    assert rate_usage(Service.VOICE, 1, 0, Decimal("0.10")).amount == Decimal("0.001667")


def test_a_single_byte_of_overage_rounds_half_up_to_six_decimals() -> None:
    assert rate_usage(Service.DATA, 1, 0, Decimal("0.5")).amount == Decimal("0.000001")
    assert rate_usage(Service.DATA, 1, 0, Decimal("0.4")).amount == Decimal("0.000000")


def test_a_negative_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        rate_usage(Service.DATA, -1, 0, Decimal("0.01"))


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match="price"):
        rate_usage(Service.DATA, 1, 0, Decimal("-0.01"))


def test_a_float_price_is_refused() -> None:
    float_price: Any = 0.01
    with pytest.raises(TypeError, match="Decimal"):
        rate_usage(Service.DATA, 1, 0, float_price)


def test_a_negative_remaining_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="allowance"):
        rate_usage(Service.SMS, 1, -1, Decimal("0.05"))


@given(services, quantities, quantities, prices)
def test_allowance_used_and_overage_add_up_to_the_quantity(
    service: Service, quantity: int, remaining: int, price: Decimal
) -> None:
    result = rate_usage(service, quantity, remaining, price)
    assert result.allowance_used + result.overage_quantity == quantity
    assert 0 <= result.allowance_used <= remaining
    assert result.amount.as_tuple().exponent == -6


@given(services, quantities, quantities, prices)
def test_usage_within_the_allowance_always_costs_zero(
    service: Service, quantity: int, extra: int, price: Decimal
) -> None:
    assert rate_usage(service, quantity, quantity + extra, price).amount == 0


@given(services, quantities, quantities, quantities, prices)
def test_rating_in_two_parts_costs_the_same_as_at_once_within_a_micro_unit_per_part(
    service: Service, first: int, second: int, remaining: int, price: Decimal
) -> None:
    whole = rate_usage(service, first + second, remaining, price)
    part_one = rate_usage(service, first, remaining, price)
    part_two = rate_usage(service, second, remaining - part_one.allowance_used, price)
    assert abs(part_one.amount + part_two.amount - whole.amount) <= 2 * ONE_MICRO
    assert part_one.overage_quantity + part_two.overage_quantity == whole.overage_quantity
