"""Invoice documents rendered to HTML (Jinja2) and PDF (WeasyPrint), themed with the tenant's brand colour."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_percent

from mvne.charging.invoicing import TAX_KIND, InvoiceLine
from mvne.charging.money import (
    babel_locale,
    format_money,
    format_quantity,
    format_unit_price,
    minor_units,
)

DEFAULT_BRAND_COLOR = "#1f3a5f"

_TEMPLATES = Path(__file__).parent / "templates"
_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_TEMPLATES),
    autoescape=True,  # buyer names and notes come from subscribers; never trust them as markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Party:
    """The seller or the buyer of an invoice; `country` is an ISO 3166 alpha-2 code."""

    name: str
    address_lines: tuple[str, ...]
    country: str
    vat_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        # Callers often hold a list; a tuple keeps the frozen dataclass truly immutable.
        object.__setattr__(self, "address_lines", tuple(self.address_lines))


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything printed on an invoice; the amounts must add up as `compute_invoice` makes them."""

    number: str
    issued_at: datetime
    period_start: date
    period_end: date
    due_date: date
    currency: str
    locale: str
    seller: Party
    buyer: Party
    lines: list[InvoiceLine]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    tax_rate: Decimal
    brand_color: str = DEFAULT_BRAND_COLOR
    notes: str | None = None

    def __post_init__(self) -> None:
        # The colour goes into a <style> block, where HTML escaping protects nothing.
        if not _HEX_COLOR.fullmatch(self.brand_color):
            raise ValueError(f"brand colour must be a CSS hex colour such as #1f3a5f, got {self.brand_color!r}")
        if self.issued_at.tzinfo is None:
            raise ValueError("issued_at must be timezone-aware")
        if self.period_end < self.period_start:
            raise ValueError("the billing period ends before it starts")
        minor_units(self.currency)
        babel_locale(self.locale)
        # A printed invoice that does not add up is a legal problem; refuse it rather than render it.
        charged = sum((line.amount for line in self.lines if line.kind != TAX_KIND), Decimal(0))
        taxed = [line.amount for line in self.lines if line.kind == TAX_KIND]
        if charged != self.subtotal:
            raise ValueError(f"lines add up to {charged}, not to the subtotal {self.subtotal}")
        if taxed and sum(taxed, Decimal(0)) != self.tax:
            raise ValueError(f"tax lines add up to {sum(taxed, Decimal(0))}, not to the tax {self.tax}")
        if self.subtotal + self.tax != self.total:
            raise ValueError(f"subtotal {self.subtotal} plus tax {self.tax} is not the total {self.total}")


def _text_color_on(background: str) -> str:
    """Black or white, whichever reads better on the background (WCAG relative luminance)."""
    hex_digits = background.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)

    def channel(pair: str) -> float:
        c = int(pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(hex_digits[i : i + 2]) for i in (0, 2, 4))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # 0.179 is where contrast against black and against white are equal.
    return "#111111" if luminance > 0.179 else "#ffffff"


def _party_view(party: Party, locale: Locale) -> dict[str, Any]:
    return {
        "name": party.name,
        "address_lines": list(party.address_lines),
        "country": locale.territories.get(party.country, party.country),
        "vat_id": party.vat_id,
        "email": party.email,
    }


def _context(doc: InvoiceDocument) -> dict[str, Any]:
    locale = babel_locale(doc.locale)

    def money(amount: Decimal) -> str:
        return format_money(amount, doc.currency, doc.locale)

    def day(value: date) -> str:
        return str(format_date(value, format="medium", locale=locale))

    lines = [
        {
            "description": line.description,
            "quantity": f"{format_quantity(line.quantity, doc.locale)} {line.unit}".strip(),
            "unit_price": (
                format_unit_price(line.unit_price, doc.currency, doc.locale) if line.unit_price is not None else ""
            ),
            "amount": money(line.amount),
        }
        for line in doc.lines
        if line.kind != TAX_KIND
    ]
    rate = str(format_percent(doc.tax_rate, locale=locale, decimal_quantization=False))
    legal = [doc.seller.name, *doc.seller.address_lines, locale.territories.get(doc.seller.country, "")]
    if doc.seller.vat_id:
        legal.append(f"VAT ID {doc.seller.vat_id}")
    if doc.seller.email:
        legal.append(doc.seller.email)
    return {
        "number": doc.number,
        "issued_on": day(doc.issued_at.date()),
        "period": f"{day(doc.period_start)} \u2013 {day(doc.period_end)}",  # en dash, typeset ranges
        "due_on": day(doc.due_date),
        "currency": doc.currency,
        "lang": locale.language,
        "seller": _party_view(doc.seller, locale),
        "buyer": _party_view(doc.buyer, locale),
        "lines": lines,
        "subtotal": money(doc.subtotal),
        "tax_label": f"VAT {rate}",
        "tax": money(doc.tax),
        "total": money(doc.total),
        "brand_color": doc.brand_color,
        "brand_text_color": _text_color_on(doc.brand_color),
        "legal_line": " · ".join(part for part in legal if part),
        "notes": doc.notes,
    }


def render_invoice_html(doc: InvoiceDocument) -> str:
    """The invoice as a standalone HTML page (inline CSS, no external resources)."""
    return _env.get_template("invoice.html").render(_context(doc))


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice as an A4 PDF; about 0.2 s of CPU, so call it from a worker, not a request (P20)."""
    import weasyprint  # heavy import (pango, cffi); only workers that render pay for it

    html = weasyprint.HTML(
        string=render_invoice_html(doc),
        base_url=str(_TEMPLATES),
        # Only inline data: URLs; an invoice must never reach the network or the file system.
        url_fetcher=weasyprint.URLFetcher(allowed_protocols={"data"}),
    )
    pdf = html.write_pdf()
    if pdf is None:  # write_pdf returns bytes when given no target
        raise RuntimeError("WeasyPrint returned no PDF")
    return bytes(pdf)
