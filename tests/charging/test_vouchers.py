"""Top-up vouchers: a batch's codes shown once, each voucher redeemed once into a line's prepaid balance."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from sqlalchemy import select

from mvne.charging.models import Voucher
from mvne.infra.runtime import Runtime
from tests.charging.test_rating_scenarios import line_on
from tests.support.api import TenantHandle


def batch(tenant: TenantHandle, count: int = 3, amount: str = "10.00", **extra: Any) -> dict[str, Any]:
    made = tenant.api.post("/v1/voucher-batches", {"name": "Shop cards", "amount": amount, "count": count, **extra})
    assert made.status_code == 201, made.json
    return dict(made.json)


def redeem(tenant: TenantHandle, sub: dict[str, Any], code: str) -> Any:
    return tenant.api.post(f"/v1/subscriptions/{sub['id']}/voucher-redemptions", {"code": code})


def test_a_voucher_tops_up_a_line_once_and_its_code_is_kept_only_as_a_digest(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    made = batch(tenant)
    sub = line_on(tenant.api)
    code = made["codes"][0]

    redeemed = redeem(tenant, sub, code.replace("-", " "))
    again = redeem(tenant, sub, code)
    shown = tenant.api.get(f"/v1/voucher-batches/{made['id']}").json
    balances = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances").json

    assert len(made["codes"]) == len(set(made["codes"])) == 3
    assert (made["unused"], made["redeemed"]) == (3, 0)
    assert redeemed.status_code == 201, redeemed.json
    assert (redeemed.json["kind"], redeemed.json["amount"]) == ("top_up", "10.00")
    assert redeemed.json["description"] == f"Voucher ...{code[-4:]}"
    assert (again.status_code, again.json["code"]) == (409, "voucher_already_redeemed")
    assert (shown["unused"], shown["redeemed"]) == (2, 1)
    assert "codes" not in shown
    assert balances["money"] == {"amount": "10.00", "currency": "EUR"}
    with runtime.db.session(tenant_id=tenant.id) as session:
        stored = session.scalars(select(Voucher.code_digest).where(Voucher.batch_id == made["id"])).all()
    assert all(code.replace("-", "") not in digest for digest in stored for code in made["codes"])


def test_two_lines_racing_for_one_voucher_get_it_once(tenant: TenantHandle) -> None:
    code = batch(tenant, count=1)["codes"][0]
    lines = [line_on(tenant.api) for _ in range(4)]
    answers: list[int] = []

    def run(sub: dict[str, Any]) -> None:
        answers.append(redeem(tenant, sub, code).status_code)

    threads = [threading.Thread(target=run, args=(sub,)) for sub in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [201, 409, 409, 409]


def test_a_wrong_expired_or_cancelled_voucher_is_refused_with_its_code(tenant: TenantHandle) -> None:
    sub = line_on(tenant.api)
    soon = batch(tenant, count=1, expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat())
    cancelled = batch(tenant, count=1)
    assert tenant.api.post(f"/v1/voucher-batches/{cancelled['id']}/cancel").json["status"] == "cancelled"
    time.sleep(2.1)

    wrong = redeem(tenant, sub, "0000-0000-0000-0000")
    short = redeem(tenant, sub, "1234")
    expired = redeem(tenant, sub, soon["codes"][0])
    stopped = redeem(tenant, sub, cancelled["codes"][0])
    hostile = redeem(tenant, sub, "1234\x00")

    assert (wrong.status_code, wrong.json["code"]) == (422, "voucher_not_found")
    assert (short.status_code, short.json["code"]) == (422, "voucher_not_found")
    assert (expired.status_code, expired.json["code"]) == (409, "voucher_expired")
    assert (stopped.status_code, stopped.json["code"]) == (409, "voucher_cancelled")
    assert hostile.status_code == 422
    assert tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances").json["money"] is None


def test_a_bad_batch_is_refused(tenant: TenantHandle) -> None:
    for body in (
        {"name": "x", "amount": "10.00", "count": 0},
        {"name": "x", "amount": "10.00", "count": 10_001},
        {"name": "x", "amount": "0", "count": 1},
        {"name": "x", "amount": 10, "count": 1},
        {"name": "x", "amount": "10.00", "count": 1, "expires_at": "2020-01-01T00:00:00Z"},
    ):
        refused = tenant.api.post("/v1/voucher-batches", body)
        assert refused.status_code == 422, (body, refused.json)
