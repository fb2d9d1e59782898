"""Top-up vouchers: a tenant makes a batch of codes (sold on cards, in shops), each worth its amount once.

A code is 16 random digits, shown once when its batch is made; the platform keeps only an HMAC of it under
its own secret key, so a copy of the database alone does not let anyone try codes offline. Redeeming one
tops up a line's prepaid balance, once: the voucher row is locked and marked in the same transaction as the
top-up, and the balance movement's reference is the voucher.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from mvne.charging.balances import MAX_TOP_UP, top_up
from mvne.charging.models import BalanceMovement, Voucher, VoucherBatch
from mvne.infra.db import utcnow
from mvne.infra.errors import Conflict, InvalidInput, NotFound
from mvne.infra.ids import new_id, new_ids
from mvne.tenants.service import record_event

MAX_BATCH = 10_000
CODE_DIGITS = 16


class VoucherBatchNotFound(NotFound):
    code = "voucher_batch_not_found"


class InvalidVoucherBatch(InvalidInput):
    code = "invalid_voucher_batch"


class VoucherNotFound(InvalidInput):
    """No voucher of the tenant has this code (a 422, not a 404: the code is the input that is wrong)."""

    code = "voucher_not_found"


class VoucherUsed(Conflict):
    code = "voucher_already_redeemed"


class VoucherExpired(Conflict):
    code = "voucher_expired"


class VoucherCancelled(Conflict):
    code = "voucher_cancelled"


@dataclass(frozen=True)
class MadeBatch:
    batch: VoucherBatch
    codes: list[str]


def _digits(code: str) -> str:
    """A code as typed ("1234 5678-9012 3456") reduced to its digits."""
    return "".join(c for c in code if c.isdigit() and c.isascii())


def code_digest(key: bytes, tenant_id: str, code: str) -> str:
    return hmac.new(key, f"{tenant_id}:{_digits(code)}".encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    return "-".join(digits[i : i + 4] for i in range(0, CODE_DIGITS, 4))


def make_batch(
    session: Session,
    key: bytes,
    *,
    name: str,
    amount: Decimal,
    currency: str,
    count: int,
    expires_at: dt.datetime | None = None,
) -> MadeBatch:
    """A batch of `count` vouchers worth `amount` each, written in one statement; the codes, which are not kept."""
    if not 1 <= count <= MAX_BATCH:
        raise InvalidVoucherBatch(f"A batch holds 1 to {MAX_BATCH:,} vouchers.")
    if not Decimal(0) < amount <= MAX_TOP_UP:
        raise InvalidVoucherBatch(f"A voucher is worth more than 0 and at most {MAX_TOP_UP}.")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidVoucherBatch("The batch would expire before it is sold.")
    tenant_id = str(session.info["tenant_id"])
    batch = VoucherBatch(
        id=new_id("vbt"), name=name, amount=amount, currency=currency, count=count, expires_at=expires_at
    )
    session.add(batch)
    session.flush()
    codes = [_new_code() for _ in range(count)]
    rows = [
        {
            "id": voucher_id,
            "tenant_id": tenant_id,
            "batch_id": batch.id,
            "code_digest": code_digest(key, tenant_id, code),
            "last4": code[-4:],
            "status": "unused",
        }
        for voucher_id, code in zip(new_ids("vch", count), codes, strict=True)
    ]
    session.execute(insert(Voucher), rows)
    record_event(session, "voucher_batch.created", batch.id, {"batch": batch.id, "count": count, "amount": str(amount)})
    return MadeBatch(batch, codes)


def get_batch(session: Session, batch_id: str) -> VoucherBatch:
    batch = session.get(VoucherBatch, batch_id)
    if batch is None:
        raise VoucherBatchNotFound(f"No voucher batch {batch_id}.")
    return batch


def batch_counts(session: Session, batch_id: str) -> dict[str, int]:
    """How many of the batch's vouchers are unused and redeemed."""
    found = {"unused": 0, "redeemed": 0}
    for status, count in session.execute(
        select(Voucher.status, func.count()).where(Voucher.batch_id == batch_id).group_by(Voucher.status)
    ):
        found[status] = count
    return found


def cancel_batch(session: Session, batch_id: str) -> VoucherBatch:
    """Cancel a batch (its unused vouchers can no longer be redeemed; those redeemed stay so)."""
    batch = get_batch(session, batch_id)
    if batch.status != "cancelled":
        batch.status = "cancelled"
        session.flush()
        record_event(session, "voucher_batch.cancelled", batch.id, {"batch": batch.id})
    return batch


def redeem(session: Session, key: bytes, subscription_id: str, code: str) -> BalanceMovement:
    """Top up a line with a voucher; each voucher once, whoever races to use it."""
    tenant_id = str(session.info["tenant_id"])
    if len(_digits(code)) != CODE_DIGITS:
        raise VoucherNotFound("A voucher code is 16 digits.")
    digest = code_digest(key, tenant_id, code)
    found = session.execute(
        select(Voucher, VoucherBatch)
        .join(VoucherBatch, VoucherBatch.id == Voucher.batch_id)
        .where(Voucher.tenant_id == tenant_id, Voucher.code_digest == digest)
        .with_for_update(of=Voucher)
    ).first()
    if found is None:
        raise VoucherNotFound("No voucher has this code.")
    voucher, batch = found
    if voucher.status == "redeemed":
        raise VoucherUsed(f"Voucher ...{voucher.last4} was redeemed on {voucher.redeemed_at:%Y-%m-%d}.")
    if batch.status == "cancelled":
        raise VoucherCancelled(f"Voucher ...{voucher.last4} belongs to a cancelled batch.")
    if batch.expires_at is not None and batch.expires_at <= utcnow():
        raise VoucherExpired(f"Voucher ...{voucher.last4} expired on {batch.expires_at:%Y-%m-%d}.")
    movement = top_up(
        session,
        subscription_id,
        batch.amount,
        currency=batch.currency,
        reference=f"voucher:{voucher.id}",
        description=f"Voucher ...{voucher.last4}",
    )
    session.execute(
        update(Voucher)
        .where(Voucher.id == voucher.id)
        .values(status="redeemed", subscription_id=subscription_id, movement_id=movement.id, redeemed_at=utcnow())
    )
    record_event(
        session,
        "voucher.redeemed",
        voucher.id,
        {"voucher": voucher.id, "batch": batch.id, "subscription": subscription_id, "amount": str(batch.amount)},
    )
    return movement
