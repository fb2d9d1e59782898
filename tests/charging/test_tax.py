"""VAT rates by country and date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mvne.charging.tax import VAT_RATES, UnknownTaxCountry, vat_rate


@pytest.mark.parametrize(
    ("country", "rate"),
    [
        ("FR", "0.20"),
        ("DE", "0.19"),
        ("ES", "0.21"),
        ("IT", "0.22"),
        ("GB", "0.20"),
        ("BE", "0.21"),
        ("NL", "0.21"),
        ("IE", "0.23"),
        ("PT", "0.23"),
        ("AT", "0.20"),
        ("PL", "0.23"),
        ("SE", "0.25"),
    ],
)
def test_each_country_has_its_current_standard_rate(country: str, rate: str) -> None:
    assert vat_rate(country, date(2025, 6, 1)) == Decimal(rate)


def test_germany_charged_16_percent_during_the_second_half_of_2020_only() -> None:
    assert vat_rate("DE", date(2020, 6, 30)) == Decimal("0.19")
    assert vat_rate("DE", date(2020, 7, 1)) == Decimal("0.16")
    assert vat_rate("DE", date(2020, 12, 31)) == Decimal("0.16")
    assert vat_rate("DE", date(2021, 1, 1)) == Decimal("0.19")


def test_france_charged_19_6_percent_before_2014() -> None:
    assert vat_rate("FR", date(2013, 12, 31)) == Decimal("0.196")
    assert vat_rate("FR", date(2014, 1, 1)) == Decimal("0.20")


def test_a_country_without_a_rate_raises_an_error_naming_it() -> None:
    with pytest.raises(UnknownTaxCountry, match="'US'") as caught:
        vat_rate("US", date(2025, 1, 1))
    assert caught.value.country == "US"


def test_a_date_before_the_known_history_raises_rather_than_guessing() -> None:
    with pytest.raises(UnknownTaxCountry, match="1990-01-01"):
        vat_rate("FR", date(1990, 1, 1))


def test_a_lower_case_country_code_is_not_silently_matched() -> None:
    with pytest.raises(UnknownTaxCountry):
        vat_rate("fr", date(2025, 1, 1))


def test_a_datetime_is_refused_because_the_tax_point_is_a_calendar_day() -> None:
    with pytest.raises(TypeError, match="date"):
        vat_rate("FR", datetime(2025, 1, 1, tzinfo=UTC))


def test_no_two_periods_of_a_country_overlap() -> None:
    for row in VAT_RATES:
        for other in VAT_RATES:
            if other is row or other.country != row.country:
                continue
            assert not row.applies_on(other.valid_from), (row, other)
