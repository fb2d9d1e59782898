"""Turning rated charges into invoice lines and totals: each line rounded once, total = sum of lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mvne.charging.money import minor_units, round_money

TAX_KIND = "tax"
RECURRING_KIND = "recurring"


def _require_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")


@dataclass(frozen=True)
class Charge:
    """Something billed: a recurring fee, an overage, an add-on; `amount` is unrounded (up to 6 decimals)."""

    kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    # The period the usage belongs to, when it is not the invoice's own (usage rated after its period was billed).
    period: str | None = None
    # standard (taxed at the invoice's rate) | zero (zero-rated) | exempt
    tax_category: str = "standard"

    def __post_init__(self) -> None:
        _require_decimal("quantity", self.quantity)
        _require_decimal("amount", self.amount)
        if self.unit_price is not None:
            _require_decimal("unit_price", self.unit_price)
        if self.kind == TAX_KIND:
            raise ValueError("tax is computed by compute_invoice, not passed in as a charge")


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice; `amount` is rounded to the currency's minor unit."""

    kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    period: str | None = None
    tax_category: str = "standard"


@dataclass(frozen=True)
class InvoiceTotals:
    """An invoice's lines (the tax line last), subtotal before tax, tax and total, all in `currency`."""

    lines: list[InvoiceLine]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    tax_rate: Decimal
    currency: str

    @property
    def charge_lines(self) -> list[InvoiceLine]:
        """The lines other than tax."""
        return [line for line in self.lines if line.kind != TAX_KIND]


def format_rate_percent(rate: Decimal) -> str:
    """A rate fraction as a percent without trailing zeros: 0.20 -> "20", 0.055 -> "5.5"."""
    return format((rate * 100).normalize(), "f")


def compute_invoice(charges: list[Charge], *, currency: str, tax_rate: Decimal) -> InvoiceTotals:
    """Round each charge half-up once, add a VAT line on the subtotal; the total is the sum of the lines.

    Charges of tax category zero or exempt are outside the VAT base: the tax is the rate times the
    subtotal of the standard lines.
    """
    minor_units(currency)  # an unknown currency fails here, even with no charges
    _require_decimal("tax_rate", tax_rate)
    if not Decimal(0) <= tax_rate < Decimal(1):
        raise ValueError(f"tax rate is a fraction in [0, 1), such as 0.20 for 20%, got {tax_rate}")
    lines: list[InvoiceLine] = []
    for charge in charges:
        # Straight to the minor unit: going through 6 decimals first would round twice
        # (0.0049996 -> 0.005000 -> 0.01 where once gives 0.00).
        amount = round_money(charge.amount, currency)
        if amount.is_zero() and charge.kind != RECURRING_KIND:
            continue  # usage within allowance leaves nothing to bill; a 0.00 plan fee still shows
        lines.append(
            InvoiceLine(
                kind=charge.kind,
                description=charge.description,
                quantity=charge.quantity,
                unit=charge.unit,
                unit_price=charge.unit_price,
                amount=amount.copy_abs() if amount.is_zero() else amount,
                period=charge.period,
                tax_category=charge.tax_category,
            )
        )
    subtotal = round_money(sum((line.amount for line in lines), Decimal(0)), currency)
    taxed = sum((line.amount for line in lines if line.tax_category == "standard"), Decimal(0))
    tax = round_money(taxed * tax_rate, currency)
    tax = tax.copy_abs() if tax.is_zero() else tax
    lines.append(
        InvoiceLine(
            kind=TAX_KIND,
            description=f"VAT {format_rate_percent(tax_rate)}%",
            quantity=Decimal(1),
            unit="",
            unit_price=None,
            amount=tax,
        )
    )
    return InvoiceTotals(
        lines=lines,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        tax_rate=tax_rate,
        currency=currency,
    )
