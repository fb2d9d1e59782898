"""Prepaid money balances: top-ups, and the overage of rated usage paid from them.

A line with a money balance is prepaid. Usage beyond its buckets is paid from the balance as it is rated,
in the same transaction as the records (set-based: one statement per batch, not one per record), and such
records are marked `prepaid` so no invoice bills them again. Online charging grants no more than the
balance covers; usage that arrives as records without having asked first may take it below zero, and the
next top-up pays that back first.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from mvne.charging.models import BalanceMovement, MoneyBalance, UsageRecord
from mvne.infra.db import one_of, pg_array, utcnow
from mvne.infra.errors import Conflict, InvalidInput
from mvne.infra.fields import money_str
from mvne.infra.ids import new_id, new_ids
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.provisioning.models import Subscription
from mvne.tenants.service import record_event, record_events

MAX_TOP_UP = Decimal("100000")
MICRO = Decimal("0.000001")


class LineCannotTopUp(Conflict):
    code = "line_cannot_top_up"


class InvalidTopUp(InvalidInput):
    code = "invalid_top_up"


class TopUpCurrencyMismatch(InvalidInput):
    code = "currency_mismatch"


def money_balance(session: Session, subscription_id: str) -> MoneyBalance | None:
    """The line's prepaid money balance; None for a postpaid line."""
    return session.scalar(select(MoneyBalance).where(MoneyBalance.subscription_id == subscription_id))


def top_up(
    session: Session,
    subscription_id: str,
    amount: Decimal,
    *,
    currency: str,
    reference: str,
    description: str = "Top-up",
) -> BalanceMovement:
    """Add money to a line's balance (made on the first top-up: the line becomes prepaid); once per `reference`."""
    if not Decimal(0) < amount <= MAX_TOP_UP:
        raise InvalidTopUp(f"A top-up is more than 0 and at most {MAX_TOP_UP}.")
    line = session.get(Subscription, subscription_id)
    if line is None:
        raise SubscriptionNotFound(f"No line {subscription_id}.")
    if line.status not in ("active", "suspended"):
        raise LineCannotTopUp(f"The line is {line.status}; only an active or suspended line can be topped up.")
    done = session.scalar(select(BalanceMovement).where(BalanceMovement.reference == reference))
    if done is not None:
        return done
    balance = session.scalar(
        select(MoneyBalance).where(MoneyBalance.subscription_id == subscription_id).with_for_update()
    )
    if balance is None:
        balance = MoneyBalance(
            id=new_id("mbl"), subscription_id=subscription_id, currency=currency, amount=Decimal("0.000000")
        )
        session.add(balance)
        session.flush()
    elif balance.currency != currency:
        raise TopUpCurrencyMismatch(f"The line's balance is in {balance.currency}, not {currency}.")
    balance.amount = (balance.amount + amount).quantize(MICRO)
    balance.updated_at = utcnow()
    movement = BalanceMovement(
        id=new_id("bmv"),
        subscription_id=subscription_id,
        kind="top_up",
        amount=amount,
        balance_after=balance.amount,
        reference=reference,
        description=description[:300],
    )
    session.add(movement)
    session.flush()
    record_event(
        session,
        "balance.topped_up",
        movement.id,
        {
            "subscription": subscription_id,
            "movement": movement.id,
            "amount": str(amount),
            "currency": currency,
            "balance": str(balance.amount),
        },
    )
    return movement


def pay_usage(session: Session, tenant_id: str, rated: Iterable[tuple[str, str, Decimal]]) -> set[str]:
    """Pay rated records (usage id, line, amount) of prepaid lines from their balances: one movement per line,
    the records marked `prepaid`. The ids of the records so paid."""
    by_line: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for usage_id, line_id, amount in rated:
        by_line[line_id].append((usage_id, amount))
    if not by_line:
        return set()
    balances = session.execute(
        select(MoneyBalance.id, MoneyBalance.subscription_id, MoneyBalance.amount, MoneyBalance.currency)
        .where(MoneyBalance.tenant_id == tenant_id, one_of(session, MoneyBalance.subscription_id, set(by_line)))
        .order_by(MoneyBalance.subscription_id)
        .with_for_update()
    ).all()
    if not balances:
        return set()
    paid: set[str] = set()
    now = utcnow()
    movements = []
    afters: list[tuple[str, Decimal]] = []
    exhausted: list[tuple[str, dict[str, Any]]] = []
    for (balance_id, line_id, amount, currency), movement_id in zip(
        balances, new_ids("bmv", len(balances)), strict=True
    ):
        records = by_line[line_id]
        total = sum((a for _, a in records), Decimal(0))
        after = (amount - total).quantize(MICRO)
        afters.append((balance_id, after))
        paid.update(usage_id for usage_id, _ in records)
        count = len(records)
        movements.append(
            {
                "id": movement_id,
                "tenant_id": tenant_id,
                "subscription_id": line_id,
                "kind": "usage",
                "amount": -total,
                "balance_after": after,
                # The batch's first record for the line: a batch is rated once, so this names it once.
                "reference": f"usage:{records[0][0]}",
                "description": f"Usage beyond the allowances, {count} record{'s' if count != 1 else ''} ({currency})",
                "records": count,
                "created_at": now,
            }
        )
        if amount > 0 >= after:
            exhausted.append(
                (movement_id, {"subscription": line_id, "balance": money_str(after), "currency": currency})
            )
    _write_amounts(session, afters, now)
    record_events(session, "balance.money_exhausted", exhausted, tenant_id=tenant_id)
    session.execute(insert(BalanceMovement), movements)
    session.execute(
        update(UsageRecord)
        .where(UsageRecord.tenant_id == tenant_id, one_of(session, UsageRecord.id, paid))
        .values(prepaid=True)
    )
    return paid


def _write_amounts(session: Session, afters: list[tuple[str, Decimal]], now: dt.datetime) -> None:
    """New amounts of several balances in one statement (a batch may pay for thousands of lines)."""
    if not afters:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE money_balances SET amount = v.amount, updated_at = :now "
                "FROM unnest(CAST(:ids AS VARCHAR(40)[]), CAST(:amounts AS NUMERIC[])) AS v(id, amount) "
                "WHERE money_balances.id = v.id"
            ),
            {"ids": pg_array([i for i, _ in afters]), "amounts": pg_array([a for _, a in afters]), "now": now},
        )
        return
    # Elsewhere (SQLite) one cached Core statement for every balance, sent as the driver's executemany.
    table = cast(Table, MoneyBalance.__table__)
    session.connection().execute(
        update(table).where(table.c.id == bindparam("balance_id")).values(amount=bindparam("after"), updated_at=now),
        [{"balance_id": i, "after": a} for i, a in afters],
    )


def movements(session: Session, subscription_id: str, limit: int = 100) -> list[BalanceMovement]:
    """The line's latest balance movements, newest first."""
    return list(
        session.scalars(
            select(BalanceMovement)
            .where(BalanceMovement.subscription_id == subscription_id)
            .order_by(BalanceMovement.created_at.desc(), BalanceMovement.id.desc())
            .limit(limit)
        )
    )
