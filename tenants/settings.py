"""A tenant's settings: its market (languages, tax rate) and billing (payment terms, invoice series).

One `TenantSettings` row per tenant, made the first time something is set. Readers get the platform's
defaults until then: payment within 14 days, invoice numbers in the INV- series, the country's standard
VAT rate, no languages chosen. Services take a tenant-scoped session.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from babel import Locale, UnknownLocaleError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.tenants.errors import CountryLocked, CurrencyLocked, InvalidLanguage, InvalidTaxRate, TimezoneLocked
from mvne.tenants.models import Tenant, TenantSettings
from mvne.tenants.service import record_event

DEFAULT_PAYMENT_TERMS_DAYS = 14
DEFAULT_INVOICE_SERIES = "INV-"
INVOICE_SERIES = r"^[A-Z0-9-]{1,10}$"
MAX_TAX_DECIMALS = 4
_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}", re.ASCII)


def find_settings(session: Session) -> TenantSettings | None:
    """The session's tenant's settings row, or None while nothing was set."""
    return session.scalar(select(TenantSettings))


def settings_for_update(session: Session) -> TenantSettings:
    """The session's tenant's settings row, made with the defaults when it has none yet."""
    row = session.scalar(select(TenantSettings).with_for_update())
    if row is None:
        row = TenantSettings(id=new_id("tst"), payment_terms_days=DEFAULT_PAYMENT_TERMS_DAYS)
        session.add(row)
        session.flush()
    return row


def payment_terms_days(session: Session) -> int:
    """Days between an invoice and its due date: the tenant's choice, or 14."""
    row = find_settings(session)
    return row.payment_terms_days if row is not None else DEFAULT_PAYMENT_TERMS_DAYS


def set_payment_terms(session: Session, days: int) -> None:
    """Set the payment terms (0 to 120 days; the schema bounds them)."""
    row = settings_for_update(session)
    row.payment_terms_days = days
    row.updated_at = utcnow()


def invoice_series(session: Session) -> str:
    """What the tenant's invoice numbers start with: its series, or INV-."""
    row = find_settings(session)
    return row.invoice_series if row is not None and row.invoice_series else DEFAULT_INVOICE_SERIES


def tax_rate_fraction(session: Session) -> Decimal | None:
    """The tenant's own tax rate as a fraction (0.2 for 20%), or None to use the country's standard rate."""
    row = find_settings(session)
    if row is None or row.tax_rate is None:
        return None
    return row.tax_rate / 100


def billing_view(session: Session) -> dict[str, Any]:
    row = find_settings(session)
    return {
        "payment_terms_days": row.payment_terms_days if row is not None else DEFAULT_PAYMENT_TERMS_DAYS,
        "invoice_series": row.invoice_series if row is not None else None,
        "next_invoice_number_example": f"{invoice_series(session)}{utcnow().year}-000001",
    }


def set_billing(session: Session, *, payment_terms_days: int, invoice_series: str) -> dict[str, Any]:
    """Set the payment terms and the invoice series; numbers already issued keep theirs."""
    row = settings_for_update(session)
    row.payment_terms_days = payment_terms_days
    row.invoice_series = invoice_series
    row.updated_at = utcnow()
    session.flush()
    record_event(
        session,
        "tenant.billing_settings_updated",
        row.id,
        {"payment_terms_days": payment_terms_days, "invoice_series": invoice_series},
    )
    return billing_view(session)


def check_languages(tags: list[str]) -> list[str]:
    """BCP 47 tags that Babel knows, written the BCP 47 way (fr-FR); InvalidLanguage names each bad one."""
    errors: dict[str, list[str]] = {}
    checked: list[str] = []
    for index, tag in enumerate(tags):
        try:
            if not _TAG.fullmatch(tag):
                raise ValueError(tag)
            locale = Locale.parse(tag, sep="-")
        except (UnknownLocaleError, ValueError, TypeError):
            errors[str(index)] = [f"{tag!r} is not a language tag we know: use BCP 47 tags such as fr, fr-FR or en-GB."]
            continue
        canonical = str(locale).replace("_", "-")
        if canonical in checked:
            errors[str(index)] = [f"{canonical} is listed twice."]
            continue
        checked.append(canonical)
    if errors:
        raise InvalidLanguage("Some languages are not BCP 47 tags we know.", errors={"languages": errors})
    return checked


def check_tax_rate(rate: Decimal) -> Decimal:
    """A percent from 0 to under 100 with at most 4 decimals, kept exactly as given."""
    exponent = rate.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > MAX_TAX_DECIMALS:
        raise InvalidTaxRate(
            f"A tax rate has at most {MAX_TAX_DECIMALS} decimals.",
            errors={"tax_rate": [f"At most {MAX_TAX_DECIMALS} decimals, such as 20 or 5.5."]},
        )
    if not Decimal(0) <= rate < Decimal(100):
        raise InvalidTaxRate(
            "A tax rate is a percent from 0 to less than 100.", errors={"tax_rate": ["From 0 to less than 100."]}
        )
    return rate


def market_view(session: Session, tenant: Tenant, standard_rate: Decimal | None) -> dict[str, Any]:
    """The tenant's market; `standard_rate` is the country's standard VAT rate today (a fraction), if known."""
    row = find_settings(session)
    languages = list(row.languages or []) if row is not None else []
    return {
        "country": tenant.country,
        "currency": tenant.currency,
        "timezone": tenant.timezone,
        "languages": languages,
        "default_language": languages[0] if languages else None,
        "tax_rate": row.tax_rate if row is not None else None,
        "standard_tax_rate": standard_rate * 100 if standard_rate is not None else None,
    }


def set_market(
    session: Session,
    tenant: Tenant,
    values: dict[str, Any],
    *,
    currency_in_use: bool,
) -> TenantSettings:
    """Set currency, timezone, languages and tax rate; the country is fixed at sign-up.

    The currency cannot change once the tenant has offers (they are priced in it), nor the timezone once
    the tenant is live (its billing periods are cut in it). Nothing is written when something is refused.
    """
    country = values.get("country")
    if country is not None and country != tenant.country:
        raise CountryLocked(
            f"The country is {tenant.country} and cannot change: the tenant's number block and numbering plan "
            "are of that country. Sign up again for a brand in another country.",
            errors={"country": [f"Must be {tenant.country}."]},
        )
    if values["currency"] != tenant.currency and currency_in_use:
        raise CurrencyLocked(
            f"The currency is {tenant.currency} and the tenant already has offers priced in it; it cannot change.",
            errors={"currency": [f"Must stay {tenant.currency}."]},
        )
    if values["timezone"] != tenant.timezone and tenant.status != "onboarding":
        raise TimezoneLocked(
            f"The timezone is {tenant.timezone}: the billing periods of a live tenant are cut in it, so it no "
            "longer changes.",
            errors={"timezone": [f"Must stay {tenant.timezone}."]},
        )
    languages = check_languages(values["languages"])
    rate = check_tax_rate(values["tax_rate"])
    tenant.currency = values["currency"]
    tenant.timezone = values["timezone"]
    row = settings_for_update(session)
    row.languages = languages
    row.tax_rate = rate
    row.updated_at = utcnow()
    session.flush()
    record_event(
        session,
        "tenant.market_updated",
        row.id,
        {
            "currency": tenant.currency,
            "timezone": tenant.timezone,
            "languages": languages,
            "tax_rate": str(rate),
        },
    )
    return row
