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
from mvne.tenants.identifiers import EU_VAT_COUNTRIES

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
    """The seller or the buyer of an invoice; `country` is an ISO 3166 alpha-2 code.

    A seller states its legal identity: form (SAS), registration number and kind (SIREN, SIRET),
    the city of its trade registry (RCS, in France) and its share capital.
    """

    name: str
    address_lines: tuple[str, ...]
    country: str
    vat_id: str | None = None
    email: str | None = None
    legal_form: str | None = None
    registration_number: str | None = None
    registration_kind: str | None = None
    rcs_city: str | None = None
    share_capital: Decimal | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        # Callers often hold a list; a tuple keeps the frozen dataclass truly immutable.
        object.__setattr__(self, "address_lines", tuple(self.address_lines))


@dataclass(frozen=True)
class BankDetails:
    """Where customers pay by transfer; the IBAN is printed in groups of four."""

    iban: str
    bic: str | None = None


# Labels per language; a locale whose language is not here speaks English.
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Invoice",
        "seller": "From",
        "bill_to": "Bill to",
        "number": "Invoice number",
        "issued_on": "Issue date",
        "period": "Billing period",
        "currency": "Currency",
        "due_on": "Due date",
        "description": "Description",
        "quantity": "Quantity",
        "unit_price": "Unit price",
        "amount": "Amount",
        "subtotal": "Subtotal",
        "vat": "VAT {rate}",
        "total": "Total due",
        "vat_id": "VAT ID {vat_id}",
        "share_capital": "share capital {amount}",
        "registration": "Company number {number}",
        "rcs": "RCS {city}",
        "support": "Customer service:",
        "pay": "Please pay {amount} by {due_on}, quoting invoice number {number}.",
        "transfer": "By bank transfer to IBAN {iban}{bic}, with {number} as the transfer reference.",
        "bic": ", BIC {bic}",
        "page": "Page",
        "monthly_fee": "monthly fee",
        "overage_data": "Data beyond allowance",
        "overage_voice": "Calls beyond allowance",
        "overage_sms": "SMS beyond allowance",
        "overage_mms": "MMS beyond allowance",
        "usage_of": "usage of {period}",
        "unit.month": "month",
        "unit.MB": "MB",
        "unit.min": "min",
        "unit.SMS": "SMS",
        "unit.MMS": "MMS",
        "fr.late_payment": (
            "Late payment: penalties at the European Central Bank's refinancing rate plus 10 percentage points, "
            "and, for business customers, a fixed indemnity of €40 for recovery costs "
            "(French Commercial Code, articles L441-10 and D441-5)."
        ),
        "fr.no_discount": "No discount for early payment.",
        "fr.vat_exempt": "VAT not applicable, article 293 B of the French General Tax Code.",
        "eu.reverse_charge": "Reverse charge: VAT due by the customer (article 196 of Directive 2006/112/EC).",
    },
    "fr": {
        "title": "Facture",
        "seller": "Émetteur",
        "bill_to": "Facturé à",
        "number": "Numéro de facture",
        "issued_on": "Date d'émission",
        "period": "Période de facturation",
        "currency": "Devise",
        "due_on": "Date d'échéance",
        "description": "Désignation",
        "quantity": "Quantité",
        "unit_price": "Prix unitaire HT",
        "amount": "Montant HT",
        "subtotal": "Total HT",
        "vat": "TVA {rate}",
        "total": "Total TTC",
        "vat_id": "N° TVA intracommunautaire {vat_id}",
        "share_capital": "au capital de {amount}",
        "registration": "N° d'immatriculation {number}",
        "rcs": "RCS {city}",
        "support": "Service client\u00a0:",
        "pay": "Merci de régler {amount} au plus tard le {due_on}, en rappelant la facture n° {number}.",
        "transfer": "Par virement sur l'IBAN {iban}{bic}, avec la référence {number}.",
        "bic": ", BIC {bic}",
        "page": "Page",
        "monthly_fee": "abonnement mensuel",
        "overage_data": "Données hors forfait",
        "overage_voice": "Appels hors forfait",
        "overage_sms": "SMS hors forfait",
        "overage_mms": "MMS hors forfait",
        "usage_of": "consommation de {period}",
        "unit.month": "mois",
        "unit.MB": "Mo",
        "unit.min": "min",
        "unit.SMS": "SMS",
        "unit.MMS": "MMS",
        "fr.late_payment": (
            "En cas de retard de paiement : pénalités au taux de refinancement de la Banque centrale européenne "
            "majoré de 10 points et, pour les clients professionnels, "
            "indemnité forfaitaire pour frais de recouvrement de 40\u00a0€ "
            "(articles L441-10 et D441-5 du Code de commerce)."
        ),
        "fr.no_discount": "Pas d'escompte pour paiement anticipé.",
        "fr.vat_exempt": "TVA non applicable, article 293 B du CGI.",
        "eu.reverse_charge": "Autoliquidation : TVA due par le preneur (article 196 de la directive 2006/112/CE).",
    },
}

_OVERAGE_LINE = re.compile(r"^.+? beyond allowance(?:, usage of (?P<period>\d{4}-\d{2}))? \((?P<line>[^()]*)\)$")
_FEE_LINE = re.compile(r"^(?P<offer>.+), monthly fee \((?P<line>[^()]*)\)$")


def labels_for(locale: str) -> dict[str, str]:
    """The label catalogue of the locale's language (English when there is none)."""
    return LABELS.get(babel_locale(locale).language, LABELS["en"])


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
    bank: BankDetails | None = None
    brand_name: str | None = None

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


def _party_view(party: Party, locale: Locale, words: dict[str, str], currency: str) -> dict[str, Any]:
    name = f"{party.name} {party.legal_form}" if party.legal_form else party.name
    identity = []
    if party.share_capital is not None:
        capital = format_money(party.share_capital, currency, str(locale))
        identity.append(words["share_capital"].format(amount=capital))
    registration = []
    if party.registration_number:
        number = party.registration_number
        if party.registration_kind == "SIREN" and len(number) == 9:
            number = f"{number[:3]} {number[3:6]} {number[6:]}"
        elif party.registration_kind == "SIRET" and len(number) == 14:
            number = f"{number[:3]} {number[3:6]} {number[6:9]} {number[9:]}"
        kind = party.registration_kind
        registration.append(f"{kind} {number}" if kind else words["registration"].format(number=number))
    if party.rcs_city:
        registration.append(words["rcs"].format(city=party.rcs_city))
    return {
        "name": name,
        "address_lines": list(party.address_lines),
        "country": locale.territories.get(party.country, party.country),
        "vat_id": words["vat_id"].format(vat_id=party.vat_id) if party.vat_id else None,
        "email": party.email,
        "phone": party.phone,
        "capital": " ".join(identity),
        "registration": " \u2013 ".join(registration),
    }


def _description(line: InvoiceLine, words: dict[str, str]) -> str:
    """The line's description in the invoice's language, when it is one billing wrote (fees and overage)."""
    if line.kind in ("overage_data", "overage_voice", "overage_sms", "overage_mms"):
        match = _OVERAGE_LINE.fullmatch(line.description)
        if match:
            label = words[line.kind]
            if match["period"]:
                label += ", " + words["usage_of"].format(period=match["period"])
            return f"{label} ({match['line']})"
    elif line.kind == "recurring":
        match = _FEE_LINE.fullmatch(line.description)
        if match:
            return f"{match['offer']}, {words['monthly_fee']} ({match['line']})"
    return line.description


def _legal_mentions(doc: InvoiceDocument, words: dict[str, str]) -> list[str]:
    """What the seller's country requires an invoice to say, in the invoice's language (France for now)."""
    mentions = []
    abroad_in_eu = doc.buyer.country in EU_VAT_COUNTRIES and doc.buyer.country != doc.seller.country
    if doc.tax_rate == 0 and doc.buyer.vat_id and abroad_in_eu:
        mentions.append(words["eu.reverse_charge"])
    if doc.seller.country == "FR":
        if doc.tax_rate == 0 and not doc.seller.vat_id:
            mentions.append(words["fr.vat_exempt"])
        mentions.append(words["fr.late_payment"])
        mentions.append(words["fr.no_discount"])
    return mentions


def _context(doc: InvoiceDocument) -> dict[str, Any]:
    locale = babel_locale(doc.locale)
    words = labels_for(doc.locale)

    def money(amount: Decimal) -> str:
        return format_money(amount, doc.currency, doc.locale)

    def day(value: date) -> str:
        return str(format_date(value, format="long", locale=locale))

    def unit(name: str) -> str:
        return words.get(f"unit.{name}", name)

    lines = [
        {
            "description": _description(line, words),
            "quantity": f"{format_quantity(line.quantity, doc.locale)} {unit(line.unit)}".strip(),
            "unit_price": (
                format_unit_price(line.unit_price, doc.currency, doc.locale) if line.unit_price is not None else ""
            ),
            "amount": money(line.amount),
        }
        for line in doc.lines
        if line.kind != TAX_KIND
    ]
    rate = str(format_percent(doc.tax_rate, locale=locale, decimal_quantization=False))
    seller = _party_view(doc.seller, locale, words, doc.currency)
    legal = [
        seller["name"],
        seller["capital"],
        ", ".join([*doc.seller.address_lines, locale.territories.get(doc.seller.country, "")]),
        seller["registration"],
        seller["vat_id"],
        doc.seller.email,
    ]
    pay = words["pay"].format(amount=money(doc.total), due_on=day(doc.due_date), number=doc.number)
    transfer = None
    if doc.bank is not None:
        bic = words["bic"].format(bic=doc.bank.bic) if doc.bank.bic else ""
        iban = " ".join(doc.bank.iban[i : i + 4] for i in range(0, len(doc.bank.iban), 4))
        transfer = words["transfer"].format(iban=iban, bic=bic, number=doc.number)
    return {
        "words": words,
        "number": doc.number,
        "issued_on": day(doc.issued_at.date()),
        "period": f"{day(doc.period_start)} \u2013 {day(doc.period_end)}",  # en dash, typeset ranges
        "due_on": day(doc.due_date),
        "currency": doc.currency,
        "lang": locale.language,
        "brand_name": doc.brand_name or doc.seller.name,
        "seller": seller,
        "buyer": _party_view(doc.buyer, locale, words, doc.currency),
        "lines": lines,
        "subtotal": money(doc.subtotal),
        "tax_label": words["vat"].format(rate=rate),
        "tax": money(doc.tax),
        "total": money(doc.total),
        "pay": pay,
        "transfer": transfer,
        "mentions": _legal_mentions(doc, words),
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
