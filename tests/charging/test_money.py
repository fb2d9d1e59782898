"""Money: minor units, half-up rounding, strict parsing and locale formatting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvne.charging.money import (
    format_money,
    format_quantity,
    format_unit_price,
    minor_units,
    parse_amount,
    quantize_rated,
    round_money,
)

NOT_A_DECIMAL: Any = 0.1  # typed Any so the call type-checks and the runtime guard is what is tested


@pytest.mark.parametrize(("currency", "expected"), [("EUR", 2), ("GBP", 2), ("JPY", 0), ("BHD", 3)])
def test_minor_units_follow_the_currency(currency: str, expected: int) -> None:
    assert minor_units(currency) == expected


@pytest.mark.parametrize("currency", ["ABC", "EURO", "", "eur"])
def test_minor_units_reject_a_code_that_is_not_iso_4217(currency: str) -> None:
    with pytest.raises(ValueError, match="unknown currency code"):
        minor_units(currency)


def test_round_money_rounds_ties_away_from_zero_not_to_even() -> None:
    assert round_money(Decimal("0.125"), "EUR") == Decimal("0.13")
    assert round_money(Decimal("0.135"), "EUR") == Decimal("0.14")
    assert round_money(Decimal("-0.125"), "EUR") == Decimal("-0.13")
    assert round_money(Decimal("0.124999"), "EUR") == Decimal("0.12")


def test_round_money_uses_no_decimals_for_yen() -> None:
    rounded = round_money(Decimal("1234.5"), "JPY")
    assert rounded == Decimal("1235")
    assert rounded.as_tuple().exponent == 0


def test_round_money_refuses_a_float() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        round_money(NOT_A_DECIMAL, "EUR")


def test_round_money_refuses_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        round_money(Decimal("NaN"), "EUR")


def test_quantize_rated_keeps_six_decimals_half_up() -> None:
    assert quantize_rated(Decimal("0.0000005")) == Decimal("0.000001")
    assert quantize_rated(Decimal("0.0000004999")) == Decimal("0.000000")
    assert quantize_rated(Decimal("1.5")).as_tuple().exponent == -6


@pytest.mark.parametrize(("text", "expected"), [("12.50", "12.50"), ("0", "0"), ("-3.000001", "-3.000001")])
def test_parse_amount_reads_plain_decimals_exactly(text: str, expected: str) -> None:
    parsed = parse_amount(text)
    assert parsed == Decimal(expected)
    assert str(parsed) == expected


def test_parse_amount_turns_negative_zero_into_zero() -> None:
    assert str(parse_amount("-0.00")) == "0.00"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("1e3", "exponent"),
        ("1E-2", "exponent"),
        ("NaN", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("1.1234567", "more than 6 decimals"),
        (" 12.50", "whitespace"),
        ("12,50", "not a plain decimal"),
        ("1_000", "not a plain decimal"),
        (".5", "not a plain decimal"),
        ("+1", "not a plain decimal"),
        ("\u0663", "not a plain decimal"),  # Arabic-Indic three, which Decimal() would accept
        ("1" * 15, "integer digits"),  # beyond NUMERIC(20, 6)
    ],
)
def test_parse_amount_rejects_anything_but_a_plain_decimal_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_amount(text)


@given(st.decimals(min_value=-(10**14) + 1, max_value=10**14 - 1, places=6, allow_nan=False, allow_infinity=False))
def test_parse_amount_reads_back_what_a_decimal_prints(amount: Decimal) -> None:
    assert parse_amount(format(amount, "f")) == amount


def test_format_money_follows_the_locale() -> None:
    assert format_money(Decimal("1234.5"), "EUR") == "€1,234.50"
    assert format_money(Decimal("1234.5"), "EUR", "de_DE") == "1.234,50\xa0€"
    assert format_money(Decimal("1234.5"), "EUR", "fr-FR") == "1\u202f234,50\xa0€"
    assert format_money(Decimal("1234.5"), "JPY", "ja_JP") == "￥1,235"


def test_format_money_rounds_half_up_where_babel_alone_would_round_half_even() -> None:
    assert format_money(Decimal("0.125"), "EUR") == "€0.13"


def test_format_money_rejects_an_unknown_locale() -> None:
    with pytest.raises(ValueError, match="unknown locale"):
        format_money(Decimal(1), "EUR", "xx_YY")


def test_format_unit_price_keeps_decimals_below_the_minor_unit() -> None:
    assert format_unit_price(Decimal("0.001500"), "EUR") == "€0.0015"
    assert format_unit_price(Decimal("2"), "EUR") == "€2.00"


def test_format_quantity_shows_at_most_three_decimals() -> None:
    assert format_quantity(Decimal(1385) / 60) == "23.083"
    assert format_quantity(Decimal("1523.400"), "de") == "1.523,4"
    assert format_quantity(Decimal("-0.0001")) == "0"
