"""Invoice lines and totals: lines rounded once, half-up; the total is the sum of the lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvne.charging.invoicing import Charge, compute_invoice
from mvne.charging.money import minor_units, round_money


def charge(amount: str, kind: str = "overage_data") -> Charge:
    return Charge(kind, f"{kind} {amount}", Decimal(1), "MB", Decimal(amount), Decimal(amount))


def test_each_line_is_rounded_half_up_once() -> None:
    totals = compute_invoice([charge("0.125"), charge("1.004999")], currency="EUR", tax_rate=Decimal("0.20"))
    assert [line.amount for line in totals.charge_lines] == [Decimal("0.13"), Decimal("1.00")]


def test_a_line_is_rounded_straight_to_cents_not_through_six_decimals() -> None:
    totals = compute_invoice([charge("0.0049996")], currency="EUR", tax_rate=Decimal(0))
    assert totals.charge_lines == []


def test_the_subtotal_is_the_sum_of_rounded_lines_not_the_rounded_sum_of_charges() -> None:
    # Three charges of 0.005 are 0.015 unrounded (0.02 rounded once), but each line shows 0.01.
    totals = compute_invoice([charge("0.005")] * 3, currency="EUR", tax_rate=Decimal(0))
    assert totals.subtotal == Decimal("0.03")


def test_tax_is_the_subtotal_times_the_rate_rounded_half_up() -> None:
    totals = compute_invoice([charge("10.25")], currency="EUR", tax_rate=Decimal("0.20"))
    assert totals.tax == Decimal("2.05")
    totals = compute_invoice([charge("0.63")], currency="EUR", tax_rate=Decimal("0.196"))
    assert totals.tax == Decimal("0.12")  # 0.12348


def test_the_tax_line_comes_last_and_names_the_rate() -> None:
    totals = compute_invoice([charge("1.00")], currency="EUR", tax_rate=Decimal("0.196"))
    tax_line = totals.lines[-1]
    assert (tax_line.kind, tax_line.description, tax_line.amount) == ("tax", "VAT 19.6%", Decimal("0.20"))


def test_zero_usage_charges_are_dropped_but_a_free_recurring_fee_stays() -> None:
    totals = compute_invoice(
        [charge("0.00", "recurring"), charge("0.000", "overage_voice"), charge("0.002", "overage_sms")],
        currency="EUR",
        tax_rate=Decimal("0.20"),
    )
    assert [line.kind for line in totals.lines] == ["recurring", "tax"]
    assert totals.total == Decimal("0.00")


def test_yen_invoices_have_no_decimals() -> None:
    totals = compute_invoice([charge("1980.5", "recurring")], currency="JPY", tax_rate=Decimal("0.10"))
    assert (totals.subtotal, totals.tax, totals.total) == (Decimal(1981), Decimal(198), Decimal(2179))
    assert all(line.amount.as_tuple().exponent == 0 for line in totals.lines)


def test_an_empty_invoice_still_has_a_zero_tax_line() -> None:
    totals = compute_invoice([], currency="EUR", tax_rate=Decimal("0.21"))
    assert [(line.kind, line.amount) for line in totals.lines] == [("tax", Decimal("0.00"))]
    assert str(totals.total) == "0.00"


def test_a_tax_rate_given_as_a_percent_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        compute_invoice([charge("1")], currency="EUR", tax_rate=Decimal(20))


def test_an_unknown_currency_is_refused_even_without_charges() -> None:
    with pytest.raises(ValueError, match="currency"):
        compute_invoice([], currency="XYZ", tax_rate=Decimal("0.2"))


def test_a_charge_cannot_hold_a_float_amount() -> None:
    float_amount: Any = 9.99
    with pytest.raises(TypeError, match="Decimal"):
        Charge("recurring", "Plan", Decimal(1), "month", None, float_amount)


def test_a_charge_cannot_pose_as_the_tax_line() -> None:
    with pytest.raises(ValueError, match="tax"):
        Charge("tax", "VAT", Decimal(1), "", None, Decimal(1))


amounts = st.decimals(min_value=-1000, max_value=100_000, places=6, allow_nan=False, allow_infinity=False)
random_charges = st.lists(
    st.builds(
        Charge,
        kind=st.sampled_from(["recurring", "overage_data", "overage_voice", "overage_sms", "addon"]),
        description=st.text(max_size=20),
        quantity=st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False),
        unit=st.sampled_from(["MB", "min", "SMS", "month"]),
        unit_price=st.none() | amounts,
        amount=amounts,
    ),
    max_size=30,
)
rates = st.decimals(min_value=0, max_value=Decimal("0.3"), places=4, allow_nan=False, allow_infinity=False)


@given(random_charges, st.sampled_from(["EUR", "JPY", "GBP"]), rates)
def test_the_total_is_always_the_sum_of_the_lines_at_the_currency_minor_unit(
    charges: list[Charge], currency: str, tax_rate: Decimal
) -> None:
    totals = compute_invoice(charges, currency=currency, tax_rate=tax_rate)
    assert totals.total == sum((line.amount for line in totals.lines), Decimal(0))
    assert totals.total == totals.subtotal + totals.tax
    assert totals.subtotal == sum((line.amount for line in totals.charge_lines), Decimal(0))
    for amount in [*(line.amount for line in totals.lines), totals.subtotal, totals.tax, totals.total]:
        # Exactly the minor unit, so never more decimals than it (and 0 prints as 0.00, not 0).
        assert amount.as_tuple().exponent == -minor_units(currency)
    kept = [c for c in charges if c.kind == "recurring" or not round_money(c.amount, currency).is_zero()]
    assert [line.description for line in totals.charge_lines] == [c.description for c in kept]
