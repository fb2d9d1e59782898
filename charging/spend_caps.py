"""Spend caps: the most a line, or all the lines of a customer, may spend beyond their buckets in a billing period.

What counts is the period's rated overage (the amount of each usage record of the period), online charging's
reservations included while sessions are open. Online charging grants nothing past a cap; usage the network
reports without asking first is still rated and billed, so a period's spending may end above it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mvne.charging.models import SpendCap, UsageRecord
from mvne.charging.usage import period_of
from mvne.infra.db import one_of, utcnow
from mvne.infra.errors import InvalidInput
from mvne.infra.ids import new_id
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

ACTIONS = ("stop", "throttle")
MAX_CAP = Decimal("1000000")


class InvalidSpendCap(InvalidInput):
    code = "invalid_spend_cap"


def spend_caps_of(session: Session, line_id: str, customer_id: str) -> tuple[SpendCap | None, SpendCap | None]:
    """The line's own cap and its customer's, each None when there is none."""
    caps = session.scalars(
        select(SpendCap).where((SpendCap.subscription_id == line_id) | (SpendCap.customer_id == customer_id))
    ).all()
    line = next((c for c in caps if c.subscription_id == line_id), None)
    customer = next((c for c in caps if c.customer_id == customer_id), None)
    return line, customer


def customer_lines(session: Session, customer_id: str) -> list[str]:
    return list(session.scalars(select(Subscription.id).where(Subscription.customer_id == customer_id)))


def period_spend(session: Session, line_ids: list[str], period: str) -> Decimal:
    """What these lines' usage of the period was rated beyond their buckets."""
    if not line_ids:
        return Decimal(0)
    total = session.scalar(
        select(func.coalesce(func.sum(UsageRecord.amount), 0)).where(
            one_of(session, UsageRecord.subscription_id, line_ids), UsageRecord.period == period
        )
    )
    return Decimal(total or 0)


def set_spend_cap(
    session: Session,
    *,
    amount: Decimal,
    action: str,
    subscription_id: str | None = None,
    customer_id: str | None = None,
) -> SpendCap:
    """Set the cap of a line or of a customer (replacing the one it had)."""
    if not Decimal(0) <= amount <= MAX_CAP:
        raise InvalidSpendCap(f"A spend cap is 0 to {MAX_CAP}.")
    if action not in ACTIONS:
        raise InvalidSpendCap(f"A spend cap's action is one of {', '.join(ACTIONS)}.")
    holder = SpendCap.subscription_id == subscription_id if subscription_id else SpendCap.customer_id == customer_id
    cap = session.scalar(select(SpendCap).where(holder).with_for_update())
    if cap is None:
        cap = SpendCap(id=new_id("cap"), subscription_id=subscription_id, customer_id=customer_id)
        session.add(cap)
    cap.amount, cap.action, cap.updated_at = amount, action, utcnow()
    session.flush()
    record_event(
        session,
        "spend_cap.set",
        cap.id,
        {"subscription": subscription_id, "customer": customer_id, "amount": str(amount), "action": action},
    )
    return cap


def remove_spend_cap(session: Session, *, subscription_id: str | None = None, customer_id: str | None = None) -> bool:
    """Remove the cap of a line or of a customer; whether there was one."""
    holder = SpendCap.subscription_id == subscription_id if subscription_id else SpendCap.customer_id == customer_id
    cap = session.scalar(select(SpendCap).where(holder))
    if cap is None:
        return False
    session.delete(cap)
    session.flush()
    record_event(session, "spend_cap.removed", cap.id, {"subscription": subscription_id, "customer": customer_id})
    return True


def cap_view(session: Session, tenant: Tenant, cap: SpendCap | None, line_ids: list[str]) -> dict[str, Any]:
    """A cap as the API shows it, with what its lines spent this period and what is left."""
    period = period_of(utcnow(), tenant.timezone)
    spent = period_spend(session, line_ids, period)
    if cap is None:
        return {"amount": None, "action": None, "period": period, "spent": spent, "remaining": None}
    return {
        "amount": cap.amount,
        "action": cap.action,
        "period": period,
        "spent": spent,
        "remaining": max(cap.amount - spent, Decimal(0)),
    }
