"""Carrier billing: merchants charge a tenant's lines, on their prepaid balance or their next invoice.

The tenant decides whether its lines may be charged at all (allowed, capped per line and billing period, or
barred, the default), and may bar single lines. A merchant charges through an API client of its own. A
prepaid line (one with a money balance) pays at once from the balance, under the balance's row lock; a
postpaid line's charge waits for its next invoice, which claims it like usage. A refused charge is kept with
its code, written by the caller in a transaction of its own, since the refusal rolls the request back.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mvne.charging.carrier_models import (
    CarrierBillingPolicy,
    CarrierCharge,
    CarrierRefund,
    LineCarrierBilling,
    Merchant,
)
from mvne.charging.models import BalanceMovement, MoneyBalance
from mvne.charging.money import minor_units
from mvne.charging.usage import period_of
from mvne.infra.db import utcnow
from mvne.infra.errors import Conflict, DomainError, InvalidInput, NotFound
from mvne.infra.ids import new_id
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import IssuedCredentials, issue_api_client, record_event

CHARGE_SCOPE = "carrier_billing:charge"
MODES = ("allowed", "capped", "barred")
DEFAULT_MODE = "barred"
# The most one charge, or a monthly cap, may be: carrier billing is for small purchases.
MAX_CHARGE = Decimal("1000")
MAX_CAP = Decimal("100000")
MICRO = Decimal("0.000001")


class MerchantNotFound(NotFound):
    code = "merchant_not_found"


class CarrierChargeNotFound(NotFound):
    code = "carrier_charge_not_found"


class MerchantRequired(DomainError):
    """The caller is not a merchant's client: only a merchant charges, as itself."""

    code = "merchant_required"
    status = 403
    title = "Forbidden"


class InvalidCarrierBillingPolicy(InvalidInput):
    code = "invalid_carrier_billing_policy"


class MerchantReferenceTaken(Conflict):
    code = "merchant_reference_taken"


class BalanceCurrencyMismatch(Conflict):
    code = "currency_mismatch"


class ChargeNotRefundable(Conflict):
    code = "charge_not_refundable"


class RefundExceedsCharge(Conflict):
    code = "refund_exceeds_charge"


class InvalidRefundAmount(InvalidInput):
    code = "invalid_amount"


class ChargeRefused(DomainError):
    """A charge refused for a reason the merchant and the tenant both see, by its code; it is kept as refused."""


class InvalidAmount(ChargeRefused):
    code = "invalid_amount"
    status = 422
    title = "Invalid input"


class LineNotFound(ChargeRefused):
    code = "subscription_not_found"
    status = 404
    title = "Not found"


class MerchantSuspended(ChargeRefused):
    code = "merchant_suspended"
    status = 403
    title = "Forbidden"


class CarrierBillingBarred(ChargeRefused):
    code = "carrier_billing_barred"
    status = 403
    title = "Forbidden"


class LineBarred(ChargeRefused):
    code = "line_barred"
    status = 403
    title = "Forbidden"


class LineNotActive(ChargeRefused):
    code = "line_not_active"
    status = 409
    title = "Conflict with the current state"


class MonthlyCapExceeded(ChargeRefused):
    code = "monthly_cap_exceeded"
    status = 409
    title = "Conflict with the current state"


class InsufficientBalance(ChargeRefused):
    code = "insufficient_balance"
    status = 409
    title = "Conflict with the current state"


REFUSALS: tuple[type[ChargeRefused], ...] = (
    InvalidAmount,
    LineNotFound,
    MerchantSuspended,
    CarrierBillingBarred,
    LineBarred,
    LineNotActive,
    MonthlyCapExceeded,
    InsufficientBalance,
)


# The tenant's policy --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    mode: str
    monthly_cap: Decimal | None


def policy(session: Session) -> Policy:
    """The session's tenant's carrier billing policy: barred until the tenant sets one."""
    row = session.scalar(select(CarrierBillingPolicy))
    return Policy(row.mode, row.monthly_cap) if row is not None else Policy(DEFAULT_MODE, None)


def _check_money(amount: Decimal, currency: str, *, ceiling: Decimal, what: str) -> str | None:
    """Why an amount cannot be one (more than 0, at most `ceiling`, in the currency's minor unit), or None."""
    if not amount.is_finite() or not Decimal(0) < amount <= ceiling:
        return f"{what} is more than 0 and at most {ceiling}."
    decimals = minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-decimals)):
        return f"{what} is in {currency}, with at most {decimals} decimals."
    return None


def set_policy(session: Session, tenant: Tenant, *, mode: str, monthly_cap: Decimal | None) -> Policy:
    """Allow, cap or bar carrier billing for the tenant's lines; the cap is kept only when the mode is capped."""
    if mode not in MODES:
        raise InvalidCarrierBillingPolicy(f"The mode is one of {', '.join(MODES)}.", errors={"mode": ["Unknown mode."]})
    if mode == "capped":
        if monthly_cap is None:
            raise InvalidCarrierBillingPolicy(
                "A capped policy needs its monthly cap.", errors={"monthly_cap": ["Required when the mode is capped."]}
            )
        problem = _check_money(monthly_cap, tenant.currency, ceiling=MAX_CAP, what="The monthly cap")
        if problem:
            raise InvalidCarrierBillingPolicy(problem, errors={"monthly_cap": [problem]})
    else:
        monthly_cap = None
    row = session.scalar(select(CarrierBillingPolicy).with_for_update())
    if row is None:
        row = CarrierBillingPolicy(id=new_id("cbp"), mode=mode)
        session.add(row)
    row.mode, row.monthly_cap, row.updated_at = mode, monthly_cap, utcnow()
    session.flush()
    cap = None if monthly_cap is None else str(monthly_cap)
    record_event(session, "tenant.carrier_billing_updated", row.id, {"mode": mode, "monthly_cap": cap})
    return Policy(mode, monthly_cap)


# Lines barred -----------------------------------------------------------------------------------------------------


def line_barred(session: Session, subscription_id: str) -> bool:
    """Whether the line itself is barred from carrier billing."""
    barred = session.scalar(
        select(LineCarrierBilling.barred).where(LineCarrierBilling.subscription_id == subscription_id)
    )
    return bool(barred)


def set_line_barred(session: Session, subscription_id: str, barred: bool) -> bool:
    """Bar a line from carrier billing, or lift its bar; the line must be the session's tenant's."""
    line = session.get(Subscription, subscription_id)
    if line is None:
        raise SubscriptionNotFound(f"No subscription {subscription_id}.")
    row = session.scalar(
        select(LineCarrierBilling).where(LineCarrierBilling.subscription_id == line.id).with_for_update()
    )
    if row is None:
        row = LineCarrierBilling(id=new_id("lcb"), subscription_id=line.id)
        session.add(row)
    changed = row.barred != barred
    row.barred, row.updated_at = barred, utcnow()
    session.flush()
    if changed:
        record_event(session, "subscription.carrier_billing_updated", line.id, {"barred": barred})
    return barred


# Merchants --------------------------------------------------------------------------------------------------------


def create_merchant(
    session: Session, *, tenant_id: str, name: str, allowed: tuple[str, ...]
) -> tuple[Merchant, IssuedCredentials]:
    """A merchant of the tenant and its API client (scope carrier_billing:charge); the secret is returned once.

    `allowed` is what the caller may grant: a caller that cannot charge itself cannot make a client that does.
    """
    credentials = issue_api_client(
        session, tenant_id=tenant_id, name=f"Merchant: {name}"[:200], scopes=[CHARGE_SCOPE], allowed=allowed
    )
    merchant = Merchant(id=new_id("mer"), name=name, status="active", api_client_id=credentials.client_id)
    session.add(merchant)
    session.flush()
    record_event(session, "merchant.created", merchant.id, {"name": name, "api_client": credentials.client_id})
    return merchant, credentials


def get_merchant(session: Session, merchant_id: str, *, lock: bool = False) -> Merchant:
    """One of the session's tenant's merchants."""
    merchant = session.get(Merchant, merchant_id, with_for_update=lock)
    if merchant is None:
        raise MerchantNotFound(f"No merchant {merchant_id}.")
    return merchant


def merchant_of_client(session: Session, client_id: str) -> Merchant | None:
    """The merchant an API client charges as, or None for any other client (or a staff session)."""
    return session.scalar(select(Merchant).where(Merchant.api_client_id == client_id))


def set_merchant_status(session: Session, merchant_id: str, status: str) -> Merchant:
    """Suspend a merchant (its charges are refused, merchant_suspended) or make it active again."""
    merchant = get_merchant(session, merchant_id, lock=True)
    if merchant.status == status:
        return merchant
    merchant.status = status
    merchant.suspended_at = utcnow() if status == "suspended" else None
    session.flush()
    record_event(session, "merchant.suspended" if status == "suspended" else "merchant.reactivated", merchant.id, {})
    return merchant


# Charges ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequest:
    """A merchant's charge as asked: the line by subscription id or MSISDN."""

    amount: Decimal
    description: str
    subscription_id: str | None = None
    msisdn: str | None = None
    merchant_reference: str | None = None

    @property
    def line_reference(self) -> str:
        return self.subscription_id or self.msisdn or ""


def _named_line(session: Session, request: ChargeRequest, *, lock: bool = True) -> Subscription | None:
    """The line named, locked against other charges (FOR NO KEY UPDATE: rows referring to it may still be added)."""
    stmt = select(Subscription)
    if request.subscription_id is not None:
        stmt = stmt.where(Subscription.id == request.subscription_id)
    else:
        stmt = stmt.where(Subscription.msisdn == request.msisdn)
    return session.scalar(stmt.with_for_update(key_share=True) if lock else stmt)


def charged_this_period(session: Session, subscription_id: str, period: str) -> Decimal:
    """What merchants charged the line in the period, less what they refunded."""
    total = session.scalar(
        select(func.coalesce(func.sum(CarrierCharge.amount - CarrierCharge.refunded_amount), 0)).where(
            CarrierCharge.subscription_id == subscription_id,
            CarrierCharge.period == period,
            CarrierCharge.status != "refused",
        )
    )
    return Decimal(total or 0)


def _chargeable_line(session: Session, tenant: Tenant, merchant: Merchant, request: ChargeRequest) -> Subscription:
    """The line named, locked, once the amount, the merchant, the tenant's policy and the line allow a charge."""
    problem = _check_money(request.amount, tenant.currency, ceiling=MAX_CHARGE, what="A charge")
    if problem:
        raise InvalidAmount(problem, errors={"amount": [problem]})
    if merchant.status != "active":
        raise MerchantSuspended(f"Merchant {merchant.id} is suspended: the tenant refuses its charges.")
    if policy(session).mode == "barred":
        raise CarrierBillingBarred("This operator does not let merchants charge its lines.")
    line = _named_line(session, request)
    if line is None:
        raise LineNotFound(f"No line {request.line_reference}.")
    if line.status != "active":
        raise LineNotActive(f"The line is {line.status}; only an active line can be charged.")
    if line_barred(session, line.id):
        raise LineBarred("The line is barred from carrier billing.")
    if request.merchant_reference is not None:
        taken = session.scalar(
            select(CarrierCharge.id).where(
                CarrierCharge.merchant_id == merchant.id,
                CarrierCharge.merchant_reference == request.merchant_reference,
                CarrierCharge.status != "refused",
            )
        )
        if taken is not None:
            raise MerchantReferenceTaken(
                f"Charge {taken} already has the reference {request.merchant_reference!r}.",
                errors={"merchant_reference": [f"Already used by {taken}."]},
            )
    return line


def charge(session: Session, tenant: Tenant, merchant: Merchant, request: ChargeRequest) -> CarrierCharge:
    """Charge a line for a merchant: from its prepaid balance at once, or on its next invoice.

    Raises a `ChargeRefused` with the reason's code, having written nothing; the caller keeps the refusal
    (`record_refusal`) in a transaction of its own.
    """
    line = _chargeable_line(session, tenant, merchant, request)
    rules = policy(session)
    period = period_of(utcnow(), tenant.timezone)
    if rules.mode == "capped" and rules.monthly_cap is not None:
        used = charged_this_period(session, line.id, period)
        if used + request.amount > rules.monthly_cap:
            raise MonthlyCapExceeded(
                f"The line may be charged {rules.monthly_cap} {tenant.currency} by merchants in {period}; "
                f"{used} is charged already."
            )
    balance = session.scalar(select(MoneyBalance).where(MoneyBalance.subscription_id == line.id).with_for_update())
    if balance is not None:
        if balance.currency != tenant.currency:
            raise BalanceCurrencyMismatch(f"The line's balance is in {balance.currency}, not {tenant.currency}.")
        if balance.amount < request.amount:
            raise InsufficientBalance("The line's prepaid balance does not cover the charge.")
    found = CarrierCharge(
        id=new_id("cch"),
        merchant_id=merchant.id,
        subscription_id=line.id,
        line_reference=request.line_reference,
        msisdn=line.msisdn,
        amount=request.amount,
        currency=tenant.currency,
        refunded_amount=Decimal(0),
        description=request.description,
        merchant_reference=request.merchant_reference,
        status="accepted",
        payment="balance" if balance is not None else "invoice",
        period=period,
    )
    try:
        with session.begin_nested():
            session.add(found)
            session.flush()
    except IntegrityError:
        # The same reference on another line, by a request that committed meanwhile.
        raise MerchantReferenceTaken(
            f"Another charge already has the reference {request.merchant_reference!r}.",
            errors={"merchant_reference": ["Already used."]},
        ) from None
    if balance is not None:
        _move_money(
            session,
            balance,
            -request.amount,
            kind="third_party",
            reference=f"carrier_charge:{found.id}",
            description=f"{merchant.name}: {request.description}",
        )
    record_event(
        session,
        "carrier_charge.created",
        found.id,
        {
            "merchant": merchant.id,
            "subscription": line.id,
            "amount": str(found.amount),
            "currency": found.currency,
            "payment": found.payment,
            "merchant_reference": found.merchant_reference,
        },
    )
    return found


def _move_money(
    session: Session, balance: MoneyBalance, amount: Decimal, *, kind: str, reference: str, description: str
) -> BalanceMovement:
    """Change a locked balance by a signed amount and write its movement."""
    balance.amount = (balance.amount + amount).quantize(MICRO)
    balance.updated_at = utcnow()
    movement = BalanceMovement(
        id=new_id("bmv"),
        subscription_id=balance.subscription_id,
        kind=kind,
        amount=amount,
        balance_after=balance.amount,
        reference=reference,
        description=description[:300],
    )
    session.add(movement)
    session.flush()
    return movement


def record_refusal(
    session: Session, *, tenant_id: str, merchant_id: str, request: ChargeRequest, refused: ChargeRefused
) -> CarrierCharge:
    """Keep a refused charge with its code, so the tenant sees it; its own transaction, as the request rolled back."""
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    line = None
    if not isinstance(refused, LineNotFound):
        line = _named_line(session, request, lock=False)
    kept = CarrierCharge(
        id=new_id("cch"),
        merchant_id=merchant_id,
        subscription_id=line.id if line is not None else None,
        line_reference=request.line_reference,
        msisdn=line.msisdn if line is not None else request.msisdn,
        amount=request.amount,
        currency=tenant.currency,
        refunded_amount=Decimal(0),
        description=request.description,
        merchant_reference=request.merchant_reference,
        status="refused",
        refusal_code=refused.code,
        refusal_detail=refused.detail[:300],
        period=period_of(utcnow(), tenant.timezone),
    )
    session.add(kept)
    session.flush()
    record_event(
        session,
        "carrier_charge.refused",
        kept.id,
        {
            "merchant": merchant_id,
            "subscription": kept.subscription_id,
            "amount": str(kept.amount),
            "currency": kept.currency,
            "code": refused.code,
            "merchant_reference": kept.merchant_reference,
        },
    )
    return kept


def charges_query(
    *, merchant_id: str | None = None, status: str | None = None, subscription_id: str | None = None
) -> Select[Any]:
    """The session's tenant's charges, of one merchant when given, filtered by status and line."""
    stmt = select(CarrierCharge)
    if merchant_id is not None:
        stmt = stmt.where(CarrierCharge.merchant_id == merchant_id)
    if status is not None:
        stmt = stmt.where(CarrierCharge.status == status)
    if subscription_id is not None:
        stmt = stmt.where(CarrierCharge.subscription_id == subscription_id)
    return stmt


def get_charge(
    session: Session, charge_id: str, *, merchant_id: str | None = None, lock: bool = False
) -> CarrierCharge:
    """A charge of the tenant; of this merchant only when given (another merchant's is not found, as if missing)."""
    stmt = charges_query(merchant_id=merchant_id).where(CarrierCharge.id == charge_id)
    found = session.scalar(stmt.with_for_update() if lock else stmt)
    if found is None:
        raise CarrierChargeNotFound(f"No carrier charge {charge_id}.")
    return found


def refunds_of(session: Session, charge_ids: list[str]) -> dict[str, list[CarrierRefund]]:
    """The refunds of these charges, oldest first, by charge."""
    found: dict[str, list[CarrierRefund]] = {charge_id: [] for charge_id in charge_ids}
    if not charge_ids:
        return found
    rows = session.scalars(
        select(CarrierRefund).where(CarrierRefund.charge_id.in_(charge_ids)).order_by(CarrierRefund.id)
    )
    for refund in rows:
        found[refund.charge_id].append(refund)
    return found


def refund_charge(
    session: Session, charge_id: str, amount: Decimal, *, requested_by: str, merchant_id: str | None = None
) -> CarrierRefund:
    """Give back part or all of a charge, never more than charged less refunded.

    A prepaid charge's refund goes back to the balance; a postpaid charge not invoiced yet bills less; one
    already invoiced is credited on the next invoice. The charge's row lock orders a refund and the billing
    run that claims the charge: either the invoice bills the reduced charge, or the refund becomes a credit.
    """
    found = get_charge(session, charge_id, merchant_id=merchant_id, lock=True)
    if found.status == "refused":
        raise ChargeNotRefundable(f"Charge {found.id} was refused: nothing was charged.")
    problem = _check_money(amount, found.currency, ceiling=MAX_CHARGE, what="A refund")
    if problem:
        raise InvalidRefundAmount(problem, errors={"amount": [problem]})
    left = found.amount - found.refunded_amount
    if amount > left:
        raise RefundExceedsCharge(
            f"At most {left} {found.currency} of charge {found.id} is left to refund.",
            errors={"amount": [f"At most {left}."]},
        )
    assert found.subscription_id is not None
    refund = CarrierRefund(
        id=new_id("crf"),
        charge_id=found.id,
        subscription_id=found.subscription_id,
        amount=amount,
        requested_by=requested_by,
    )
    if found.payment == "balance":
        refund.settlement = "balance"
        balance = session.scalar(
            select(MoneyBalance).where(MoneyBalance.subscription_id == found.subscription_id).with_for_update()
        )
        assert balance is not None  # a balance is never deleted while its line lives
        _move_money(
            session,
            balance,
            amount,
            kind="refund",
            reference=f"carrier_refund:{refund.id}",
            description=f"Refund: {found.description}",
        )
    else:
        refund.settlement = "reduced" if found.invoice_id is None else "credit"
    found.refunded_amount += amount
    if found.refunded_amount == found.amount:
        found.status = "refunded"
    session.add(refund)
    session.flush()
    record_event(
        session,
        "carrier_charge.refunded",
        found.id,
        {
            "refund": refund.id,
            "amount": str(amount),
            "currency": found.currency,
            "settlement": refund.settlement,
            "refunded_amount": str(found.refunded_amount),
            "by": requested_by,
        },
    )
    return refund


def present_charge(found: CarrierCharge, refunds: list[CarrierRefund]) -> dict[str, Any]:
    """A charge as the API shows it, with its refunds."""
    view: dict[str, Any] = {c.key: getattr(found, c.key) for c in CarrierCharge.__table__.columns}
    view["refunds"] = refunds
    return view
