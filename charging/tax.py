"""Standard VAT rates by country, with the dates they apply, for telecom services sold to consumers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


class UnknownTaxCountry(LookupError):
    """No VAT rate is known for this country on this date."""

    def __init__(self, country: str, on: date) -> None:
        super().__init__(f"no VAT rate is known for country {country!r} on {on.isoformat()}")
        self.country = country
        self.on = on


@dataclass(frozen=True)
class VatRate:
    """A standard rate as a fraction (0.20 for 20%), valid from `valid_from` to `valid_to`, both inclusive."""

    country: str
    rate: Decimal
    valid_from: date
    valid_to: date | None = None

    def applies_on(self, on: date) -> bool:
        """Whether this rate is the one in force on `on`."""
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


# Standard rates (telecom services take the standard rate in all these countries). Each country's
# history goes back only as far as listed: an earlier date raises UnknownTaxCountry rather than guessing.
VAT_RATES: tuple[VatRate, ...] = (
    VatRate("AT", Decimal("0.20"), date(1995, 1, 1)),
    VatRate("BE", Decimal("0.21"), date(1996, 1, 1)),
    VatRate("DE", Decimal("0.16"), date(1998, 4, 1), date(2006, 12, 31)),
    VatRate("DE", Decimal("0.19"), date(2007, 1, 1), date(2020, 6, 30)),
    VatRate("DE", Decimal("0.16"), date(2020, 7, 1), date(2020, 12, 31)),  # Covid-19 cut
    VatRate("DE", Decimal("0.19"), date(2021, 1, 1)),
    VatRate("ES", Decimal("0.18"), date(2010, 7, 1), date(2012, 8, 31)),
    VatRate("ES", Decimal("0.21"), date(2012, 9, 1)),
    VatRate("FR", Decimal("0.196"), date(2000, 4, 1), date(2013, 12, 31)),
    VatRate("FR", Decimal("0.20"), date(2014, 1, 1)),
    VatRate("GB", Decimal("0.175"), date(2010, 1, 1), date(2011, 1, 3)),
    VatRate("GB", Decimal("0.20"), date(2011, 1, 4)),
    VatRate("IE", Decimal("0.23"), date(2012, 1, 1), date(2020, 8, 31)),
    VatRate("IE", Decimal("0.21"), date(2020, 9, 1), date(2021, 2, 28)),  # Covid-19 cut
    VatRate("IE", Decimal("0.23"), date(2021, 3, 1)),
    VatRate("IT", Decimal("0.21"), date(2011, 9, 17), date(2013, 9, 30)),
    VatRate("IT", Decimal("0.22"), date(2013, 10, 1)),
    VatRate("NL", Decimal("0.19"), date(2001, 1, 1), date(2012, 9, 30)),
    VatRate("NL", Decimal("0.21"), date(2012, 10, 1)),
    VatRate("PL", Decimal("0.23"), date(2011, 1, 1)),
    VatRate("PT", Decimal("0.23"), date(2011, 1, 1)),  # mainland; Azores and Madeira differ
    VatRate("SE", Decimal("0.25"), date(1995, 1, 1)),
)


def vat_rate(country: str, on: date) -> Decimal:
    """The standard VAT rate of an ISO 3166 alpha-2 country (upper case) on a date, as a fraction."""
    if isinstance(on, datetime):
        # The tax point is a calendar day in the tenant's timezone; the caller must decide which.
        raise TypeError("pass the tax point as a date, not a datetime")
    for row in VAT_RATES:
        if row.country == country and row.applies_on(on):
            return row.rate
    raise UnknownTaxCountry(country, on)


def _check_table(rows: tuple[VatRate, ...]) -> None:
    # Overlapping periods would make the answer depend on row order; refuse them at import.
    by_country: dict[str, list[VatRate]] = {}
    for row in rows:
        by_country.setdefault(row.country, []).append(row)
    for country, periods in by_country.items():
        periods.sort(key=lambda r: r.valid_from)
        for earlier, later in itertools.pairwise(periods):
            if earlier.valid_to is None or earlier.valid_to >= later.valid_from:
                raise RuntimeError(f"VAT periods overlap for {country} at {later.valid_from}")


_check_table(VAT_RATES)
