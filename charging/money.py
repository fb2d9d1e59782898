"""Money arithmetic on `Decimal`: currency minor units, half-up rounding, strict parsing, formatting."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal, get_currency_precision, is_currency

RATED_DECIMALS = 6
"""Rated usage amounts keep this many decimals (DESIGN.md, "Data and money")."""

MAX_INTEGER_DIGITS = 14
"""`parse_amount` refuses more integer digits: amounts are stored as NUMERIC(20, 6) (`infra.db.Amount`)."""

_RATED_QUANTUM = Decimal(1).scaleb(-RATED_DECIMALS)

# [0-9] and not \d: \d and Decimal() both accept non-ASCII digits such as "٣".
_PLAIN_DECIMAL = re.compile(r"-?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


def minor_units(currency: str) -> int:
    """Number of decimals of the currency's minor unit (EUR 2, JPY 0, BHD 3), from Babel's CLDR data."""
    if not isinstance(currency, str) or not is_currency(currency):
        hint = " (ISO 4217 codes are upper case)" if isinstance(currency, str) and is_currency(currency.upper()) else ""
        raise ValueError(f"unknown currency code {currency!r}{hint}")
    return int(get_currency_precision(currency))


def _require_finite_decimal(amount: Decimal) -> None:
    # A float here would already have lost cents; refuse it instead of converting.
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"money must be a finite amount, not {amount}")


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-up (away from zero on ties) to the currency's minor unit: 0.125 EUR -> 0.13."""
    _require_finite_decimal(amount)
    quantum = Decimal(1).scaleb(-minor_units(currency))
    return amount.quantize(quantum, rounding=ROUND_HALF_UP)


def quantize_rated(amount: Decimal) -> Decimal:
    """Round a rated usage amount half-up to 6 decimals."""
    _require_finite_decimal(amount)
    return amount.quantize(_RATED_QUANTUM, rounding=ROUND_HALF_UP)


def parse_amount(text: str) -> Decimal:
    """Parse a plain decimal string such as "12.50" or "-3" strictly; ValueError says what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"amount text must be a str, not {type(text).__name__}")
    if text == "":
        raise ValueError("amount is empty")
    if text != text.strip():
        raise ValueError(f"amount {text!r} has surrounding whitespace")
    lowered = text.lower()
    if any(word in lowered for word in ("nan", "inf")):
        raise ValueError(f"amount {text!r} is not a finite number")
    if "e" in lowered:
        raise ValueError(f"amount {text!r} uses an exponent; write it as a plain decimal such as 1200.50")
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"amount {text!r} is not a plain decimal number such as 12.50")
    if len(match["int"]) > MAX_INTEGER_DIGITS:
        raise ValueError(f"amount {text!r} has more than {MAX_INTEGER_DIGITS} integer digits")
    if match["frac"] is not None and len(match["frac"]) > RATED_DECIMALS:
        raise ValueError(f"amount {text!r} has more than {RATED_DECIMALS} decimals")
    value = Decimal(text)
    # "-0.00" is zero; keep its scale but drop the sign so it never prints as a negative.
    return value.copy_abs() if value.is_zero() else value


def babel_locale(locale: str) -> Locale:
    """Babel's Locale for "fr_FR" or "fr-FR"; ValueError on an unknown locale."""
    try:
        # Accept both Babel's "fr_FR" and the BCP 47 "fr-FR" that browsers and tenants send.
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {locale!r}") from exc


def format_money(amount: Decimal, currency: str, locale: str = "en") -> str:
    """Format an amount rounded half-up to the minor unit for a locale: "€1,234.50", "1.234,50 €"."""
    rounded = round_money(amount, currency)
    # Babel would round half-even by itself; it receives an already rounded amount instead.
    return str(format_currency(rounded, currency, locale=babel_locale(locale)))


def format_unit_price(amount: Decimal, currency: str, locale: str = "en") -> str:
    """Format a unit price without losing decimals below the minor unit: "€0.0015" per MB stays so."""
    _require_finite_decimal(amount)
    minor_units(currency)
    return str(format_currency(amount.normalize(), currency, locale=babel_locale(locale), decimal_quantization=False))


def format_quantity(quantity: Decimal, locale: str = "en", max_decimals: int = 3) -> str:
    """Format a quantity for reading, half-up to at most `max_decimals` without trailing zeros: "1,523.4"."""
    _require_finite_decimal(quantity)
    # 1385 s / 60 is 23.0833... min; a reader wants 23.083, not 28 digits.
    shown = quantity.quantize(Decimal(1).scaleb(-max_decimals), rounding=ROUND_HALF_UP).normalize()
    shown = shown.copy_abs() if shown.is_zero() else shown
    return str(format_decimal(shown, locale=babel_locale(locale), decimal_quantization=False))
