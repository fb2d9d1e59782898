"""Invoice documents: HTML from the Jinja template, PDF from WeasyPrint."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from mvne.charging.invoicing import Charge, compute_invoice
from mvne.charging.money import format_money
from mvne.charging.pdf import InvoiceDocument, Party, render_invoice_html, render_invoice_pdf

SELLER = Party(
    name="Nova Mobile SAS",
    address_lines=("12 rue de la Paix", "75002 Paris"),
    country="FR",
    vat_id="FR40303265045",
    email="billing@novamobile.example",
)
BUYER = Party(
    name="Jeanne <script>alert(1)</script> Martin",
    address_lines=("8 avenue Victor Hugo", "69002 Lyon"),
    country="FR",
)


def make_document(**changes: Any) -> InvoiceDocument:
    charges = [
        Charge("recurring", "Nova 20 GB plan", Decimal(1), "month", Decimal("1499.99"), Decimal("1499.99")),
        Charge(
            "overage_data",
            "Data beyond allowance",
            Decimal("345.678901"),
            "MB",
            Decimal("0.0015"),
            Decimal("0.518518"),
        ),
        Charge(
            "overage_voice",
            "Calls beyond allowance",
            Decimal(1385) / 60,
            "min",
            Decimal("0.09"),
            Decimal("2.077500"),
        ),
        Charge("overage_sms", "SMS & MMS beyond allowance", Decimal(17), "SMS", Decimal("0.05"), Decimal("0.85")),
    ]
    totals = compute_invoice(charges, currency="EUR", tax_rate=Decimal("0.20"))
    document = InvoiceDocument(
        number="INV-2025-000123",
        issued_at=datetime(2025, 4, 1, 6, 0, tzinfo=UTC),
        period_start=date(2025, 3, 1),
        period_end=date(2025, 3, 31),
        due_date=date(2025, 4, 15),
        currency="EUR",
        locale="en",
        seller=SELLER,
        buyer=BUYER,
        lines=totals.lines,
        subtotal=totals.subtotal,
        tax=totals.tax,
        total=totals.total,
        tax_rate=totals.tax_rate,
        notes="Thank you for choosing Nova Mobile.",
    )
    return dataclasses.replace(document, **changes)


@pytest.fixture(scope="module")
def document() -> InvoiceDocument:
    return make_document()


@pytest.fixture(scope="module")
def pdf(document: InvoiceDocument) -> bytes:
    # One render for the whole module: WeasyPrint costs about a second the first time.
    return render_invoice_pdf(document)


def test_the_pdf_is_a_pdf(pdf: bytes) -> None:
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) > 5_000


def test_the_pdf_text_shows_the_invoice_number_and_total(document: InvoiceDocument, pdf: bytes) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert document.number in text
    assert "€1,804.13" in text
    assert "Page 1 / 1" in text


def test_the_html_shows_the_number_every_line_and_the_totals(document: InvoiceDocument) -> None:
    html = render_invoice_html(document)
    assert document.number in html
    for description in [
        "Nova 20 GB plan",
        "Data beyond allowance",
        "Calls beyond allowance",
        "SMS &amp; MMS",
    ]:
        assert description in html
    for amount in (document.subtotal, document.tax, document.total):
        assert format_money(amount, "EUR") in html
    assert "€1,804.13" in html
    assert "VAT 20%" in html


def test_the_html_escapes_a_buyer_name_carrying_a_script(document: InvoiceDocument) -> None:
    html = render_invoice_html(document)
    assert "<script>" not in html
    assert "Jeanne &lt;script&gt;alert(1)&lt;/script&gt; Martin" in html


def test_the_html_shows_unit_prices_below_a_cent_and_short_quantities(document: InvoiceDocument) -> None:
    html = render_invoice_html(document)
    assert "€0.0015" in html
    assert "23.083 min" in html
    assert "345.679 MB" in html


def test_the_html_formats_money_and_dates_for_the_locale() -> None:
    html = render_invoice_html(make_document(locale="de_DE"))
    assert "1.804,13\xa0€" in html
    assert "15. April 2025" in html
    assert "Frankreich" in html  # the buyer's country, named in German


def test_the_brand_colour_themes_the_header_with_readable_text() -> None:
    dark = render_invoice_html(make_document(brand_color="#0b3d91"))
    light = render_invoice_html(make_document(brand_color="#ffd400"))
    assert "#0b3d91" in dark
    assert "color: #ffffff" in dark
    assert "color: #111111" in light


@pytest.mark.parametrize("colour", ["red", "#12345", "#123456;} body { display: none", "url(http://x)"])
def test_a_brand_colour_that_is_not_a_hex_colour_is_refused(colour: str) -> None:
    with pytest.raises(ValueError, match="brand colour"):
        make_document(brand_color=colour)


def test_a_document_whose_total_does_not_add_up_is_refused(document: InvoiceDocument) -> None:
    with pytest.raises(ValueError, match="total"):
        make_document(total=document.total + Decimal("0.01"))


def test_a_document_whose_lines_do_not_add_up_to_the_subtotal_is_refused(document: InvoiceDocument) -> None:
    with pytest.raises(ValueError, match="subtotal"):
        make_document(lines=document.lines[1:])


def test_a_naive_issue_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_document(issued_at=datetime(2025, 4, 1, 6, 0))  # noqa: DTZ001


# Invoices of real tenants, billed by a run: the seller's legal identity, in the tenant's language.

FRENCH_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
FRENCH_PROFILE = {
    "legal_name": "Nova Mobile",
    "legal_form": "SAS",
    "address": {"line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
    "registration_number": "732829320",
    "rcs_city": "Paris",
    "share_capital": "10000.00",
    "vat_id": "FR44732829320",
    "iban": "FR1420041010050500013M02606",
    "bic": "PSSTFRPPPAR",
    "support_email": "facturation@nova.example",
}


def pdf_words(pdf: bytes) -> str:
    """The PDF's text with every run of spaces (no-break ones included) made one space."""
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) is needed to read invoice PDFs")
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return " ".join(text.split())


def shows_label(text: str, label: str) -> bool:
    """Whether the label is in the text, whatever the case and the letter spacing (titles are set in capitals)."""
    return "".join(label.split()).casefold() in "".join(text.split()).casefold()


def billed_invoice(runtime: Any, tenant: Any, *, customer_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """One customer on the 20.00 offer with 1,820 MB used last period: 28.20 before tax, 33.84 with 20 % VAT."""
    from datetime import timedelta

    from tests.support.api import active_subscription, backdate_line, last_period, published_offer, wait_for

    offer = published_offer(tenant.api)
    body = {
        "name": "Atelier Martin",
        "email": "compta@atelier-martin.example",
        "address": {"line1": "8 avenue Victor Hugo", "postal_code": "69002", "city": "Lyon", "country": "FR"},
        **(customer_changes or {}),
    }
    buyer = tenant.api.post("/v1/customers", body)
    assert buyer.status_code == 201, buyer.json
    sub = active_subscription(tenant.api, buyer.json["id"], offer["id"])
    period, start = last_period()
    backdate_line(runtime, sub["id"], start)
    record = {
        "record_id": "pdf-1",
        "subscription": sub["id"],
        "service": "data",
        "started_at": (start + timedelta(days=2)).isoformat(),
        "volume": 1_820_000_000,
    }
    assert tenant.api.post("/v1/usage-records", {"records": [record]}).json["accepted"] == 1
    run = tenant.api.post("/v1/billing-runs", {"period": period})
    assert run.status_code == 202, run.json

    def issued() -> list[dict[str, Any]]:
        return list(tenant.api.get("/v1/invoices", customer=buyer.json["id"]).json["data"])

    [invoice] = wait_for(issued, what="the invoice")
    assert invoice["total"] == "33.84", invoice
    return invoice


def invoice_pdf_words(tenant: Any, invoice: dict[str, Any]) -> str:
    response = tenant.api.get(f"/v1/invoices/{invoice['id']}/pdf")
    assert response.status_code == 200
    return pdf_words(response.data)


def test_a_french_tenants_invoice_carries_its_legal_identity_in_french(runtime: Any, tenant: Any) -> None:
    assert tenant.api.request("PUT", "/v1/tenant/legal-profile", FRENCH_PROFILE).status_code == 200
    invoice = billed_invoice(runtime, tenant, customer_changes={"vat_id": "FR40303265045"})

    text = invoice_pdf_words(tenant, invoice)

    assert shows_label(text, "Facture")
    assert not shows_label(text, "Invoice")
    for words in ("Facturé à", "Date d'échéance", "Total HT", "TVA 20 %", "Total TTC", "Données hors forfait"):
        assert shows_label(text, words), words
    assert "Nova Mobile SAS" in text
    assert "au capital de 10 000,00 €" in text
    assert "SIREN 732 829 320" in text
    assert "RCS Paris" in text
    assert "FR44732829320" in text  # the seller's VAT id
    assert "FR40303265045" in text  # the buyer's
    assert "12 rue de la Paix" in text
    assert "FR14 2004 1010 0505 0001 3M02 606" in text
    assert "BIC PSSTFRPPPAR" in text
    assert f"référence {invoice['number']}" in text
    assert "33,84 €" in text
    due = date.fromisoformat(invoice["due_date"])
    assert f"{due.day} {FRENCH_MONTHS[due.month - 1]} {due.year}" in text
    assert "indemnité forfaitaire pour frais de recouvrement de 40 €" in text
    assert "Pas d'escompte pour paiement anticipé" in text
    assert "Page 1 / 1" in text


def test_an_english_locale_tenants_invoice_speaks_english(runtime: Any, tenant: Any) -> None:
    profile = {**FRENCH_PROFILE, "invoice_locale": "en_GB"}
    assert tenant.api.request("PUT", "/v1/tenant/legal-profile", profile).status_code == 200
    invoice = billed_invoice(runtime, tenant)

    text = invoice_pdf_words(tenant, invoice)

    for words in ("Invoice", "Bill to", "Due date", "Subtotal", "VAT 20%", "Total due", "Data beyond allowance"):
        assert shows_label(text, words), words
    assert not shows_label(text, "Facture")
    assert "€33.84" in text
    due = date.fromisoformat(invoice["due_date"])
    assert f"{due.day} {due.strftime('%B')} {due.year}" in text
    # A French seller's legal mentions, said in English.
    assert "fixed indemnity of €40 for recovery costs" in text
    assert "No discount for early payment" in text


def test_a_tenant_without_a_legal_profile_still_gets_its_invoice(runtime: Any, tenant: Any) -> None:
    invoice = billed_invoice(runtime, tenant)

    text = invoice_pdf_words(tenant, invoice)

    assert shows_label(text, "Facture")
    assert tenant.api.get("/v1/tenant/legal-profile").status_code == 404
    assert invoice["number"] in text
    assert "33,84 €" in text
    assert "IBAN" not in text


def test_a_zero_rated_sale_to_an_eu_business_abroad_says_the_customer_owes_the_vat() -> None:
    charges = [Charge("recurring", "Nova 20 GB, monthly fee (+33612345678)", Decimal(1), "month", None, Decimal("20"))]
    totals = compute_invoice(charges, currency="EUR", tax_rate=Decimal(0))
    buyer = Party(name="Muster GmbH", address_lines=("Hauptstr. 1", "10115 Berlin"), country="DE", vat_id="DE136695976")
    html = render_invoice_html(
        make_document(
            locale="fr_FR",
            buyer=buyer,
            lines=totals.lines,
            subtotal=totals.subtotal,
            tax=totals.tax,
            total=totals.total,
            tax_rate=totals.tax_rate,
        )
    )
    assert "Autoliquidation" in html
    assert "Nova 20 GB, abonnement mensuel (+33612345678)" in html
    assert "1 mois" in html
