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
    assert "15.04.2025" in html
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
