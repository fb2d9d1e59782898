"""Online charging scenarios: the engine on its Redis (the test Redis in CI) and the database, figures by hand."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from mvne.catalog.terms import line_terms
from mvne.charging.balances import money_balance, top_up
from mvne.charging.models import UsageRecord
from mvne.charging.online import credit
from mvne.charging.online.credit import OnlineCharging
from mvne.charging.online.ledger import drain
from mvne.charging.online.messages import (
    ChargingAnswer,
    ChargingRequest,
    RequestKind,
    Result,
    Service,
    UnitRequest,
)
from mvne.charging.online.service import online_charging
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on, rate_card, rate_line
from tests.support.api import TenantHandle, backdate_line

MB = 1_000_000


@pytest.fixture
def charging(runtime: Runtime) -> OnlineCharging:
    return online_charging(runtime)


def prepaid(runtime: Runtime, tenant: TenantHandle, sub: dict[str, Any], amount: str) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        top_up(session, sub["id"], Decimal(amount), currency="EUR", reference=f"test:{secrets.token_hex(6)}")


def balance_of(runtime: Runtime, tenant: TenantHandle, sub: dict[str, Any]) -> Decimal:
    with runtime.db.session(tenant_id=tenant.id) as session:
        found = money_balance(session, sub["id"])
        assert found is not None
        return found.amount


def records_of(runtime: Runtime, tenant: TenantHandle, sub: dict[str, Any]) -> list[UsageRecord]:
    with runtime.db.session(tenant_id=tenant.id) as session:
        return list(
            session.scalars(
                select(UsageRecord).where(UsageRecord.subscription_id == sub["id"]).order_by(UsageRecord.started_at)
            )
        )


class Session:
    """One charging session as the network runs it: a request number that counts up."""

    def __init__(self, engine: OnlineCharging, sub: dict[str, Any], service: Service = Service.DATA) -> None:
        self.engine, self.sub, self.service = engine, sub, service
        self.id = f"pgw.test;{secrets.token_hex(8)}"
        self.sequence = 0

    def send(self, kind: RequestKind, *units: UnitRequest, **extra: Any) -> ChargingAnswer:
        request = ChargingRequest(
            session_id=self.id,
            kind=kind,
            sequence=self.sequence,
            service=self.service,
            subscriber=self.sub["msisdn"],
            units=units,
            **extra,
        )
        self.sequence += 1
        return self.engine.handle(request)

    def open(self, *units: UnitRequest, **extra: Any) -> ChargingAnswer:
        return self.send(RequestKind.INITIAL, *units, **extra)

    def update(self, *units: UnitRequest) -> ChargingAnswer:
        return self.send(RequestKind.UPDATE, *units)

    def release(self, *units: UnitRequest) -> ChargingAnswer:
        return self.send(RequestKind.TERMINATION, *units)


def grant(answer: ChargingAnswer, rating_group: int = 1) -> Any:
    return next(g for g in answer.grants if g.rating_group == rating_group)


def settle(runtime: Runtime, charging: OnlineCharging) -> None:
    drain(runtime.db, charging.store)


def test_two_sessions_on_one_prepaid_balance_never_spend_more_than_it_holds(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)  # 0.01 per MB beyond nothing included
    prepaid(runtime, tenant, sub, "1.00")  # 100 MB
    first, second, third = Session(charging, sub), Session(charging, sub), Session(charging, sub)

    a = first.open(UnitRequest(1, requested=60 * MB))
    b = second.open(UnitRequest(1, requested=60 * MB))
    c = third.open(UnitRequest(1, requested=MB))

    assert (a.result, grant(a).result, grant(a).granted, grant(a).final_unit) == (
        Result.SUCCESS,
        Result.SUCCESS,
        60 * MB,
        None,
    )
    assert (grant(b).result, grant(b).granted) == (Result.SUCCESS, 40 * MB)
    assert grant(b).final_unit is not None  # the balance ends within this grant
    assert (grant(c).result, grant(c).granted) == (Result.CREDIT_LIMIT_REACHED, None)
    first.release(UnitRequest(1, used=60 * MB))
    second.release(UnitRequest(1, used=40 * MB))
    third.release()
    settle(runtime, charging)

    assert balance_of(runtime, tenant, sub) == Decimal("0")
    assert sorted(r.amount for r in records_of(runtime, tenant, sub)) == [Decimal("0.40"), Decimal("0.60")]


def test_many_sessions_at_once_are_granted_exactly_what_the_balance_covers(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")
    sessions = [Session(charging, sub) for _ in range(24)]
    answers: list[ChargingAnswer] = []

    def run(session: Session) -> None:
        answers.append(session.open(UnitRequest(1, requested=7 * MB)))

    threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    granted = [grant(a).granted or 0 for a in answers]
    assert sum(granted) == 100 * MB  # 14 sessions of 7 MB and one of 2 MB, whatever the order
    assert sorted(granted, reverse=True)[:15] == [7 * MB] * 14 + [2 * MB]
    assert sum(1 for a in answers if grant(a).result == Result.CREDIT_LIMIT_REACHED) == 9


def test_what_a_session_did_not_use_of_its_reservation_goes_back_to_the_balance(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")
    session = Session(charging, sub)
    assert grant(session.open(UnitRequest(1, requested=50 * MB))).granted == 50 * MB

    closing = session.release(UnitRequest(1, used=10 * MB))
    settle(runtime, charging)

    assert closing.result == Result.SUCCESS
    assert balance_of(runtime, tenant, sub) == Decimal("0.90")
    # The 40 MB it held are there for the next session: 90 MB in all.
    later = Session(charging, sub)
    assert grant(later.open(UnitRequest(1, requested=95 * MB))).granted == 90 * MB


def test_a_request_sent_twice_is_answered_twice_the_same_and_charged_once(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")
    session = Session(charging, sub)
    session.open(UnitRequest(1, requested=20 * MB))
    update = session.update(UnitRequest(1, used=20 * MB, requested=20 * MB))
    session.sequence -= 1
    again = session.update(UnitRequest(1, used=20 * MB, requested=20 * MB))
    session.release(UnitRequest(1, used=5 * MB))
    session.sequence -= 1
    release_again = session.release(UnitRequest(1, used=5 * MB))
    settle(runtime, charging)

    assert again == update
    assert release_again.result == Result.SUCCESS
    assert [r.quantity for r in records_of(runtime, tenant, sub)] == [25 * MB]
    assert balance_of(runtime, tenant, sub) == Decimal("0.75")


def test_a_session_with_two_rating_groups_refuses_only_the_one_left_without_credit(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "0.10")  # 10 MB
    session = Session(charging, sub)

    opened = session.open(UnitRequest(10, requested=10 * MB), UnitRequest(20, requested=5 * MB))
    update = session.update(UnitRequest(10, used=4 * MB, requested=10 * MB), UnitRequest(20, requested=MB))

    assert (grant(opened, 10).result, grant(opened, 10).granted) == (Result.SUCCESS, 10 * MB)
    assert grant(opened, 20).result == Result.CREDIT_LIMIT_REACHED
    # Group 10 keeps its 10 MB (4 used, 6 more granted); group 20 still has nothing.
    assert (grant(update, 10).result, grant(update, 10).granted) == (Result.SUCCESS, 6 * MB)
    assert grant(update, 20).result == Result.CREDIT_LIMIT_REACHED
    session.release(UnitRequest(10, used=6 * MB))
    settle(runtime, charging)
    assert balance_of(runtime, tenant, sub) == Decimal("0")


def test_a_stale_session_is_settled_with_what_it_reported_and_then_unknown(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    now = [dt.datetime.now(dt.UTC)]
    base = online_charging(runtime)
    engine = OnlineCharging(runtime.db, base.store, validity_s=60, grace_s=30, clock=lambda: now[0])
    prepaid(runtime, tenant, sub, "1.00")
    session = Session(engine, sub)
    session.open(UnitRequest(1, requested=30 * MB))
    session.update(UnitRequest(1, used=12 * MB, requested=30 * MB))

    assert engine.sweep() == 0  # not stale yet
    now[0] += dt.timedelta(seconds=91)
    swept = engine.sweep()
    after = session.update(UnitRequest(1, used=30 * MB))
    settle(runtime, engine)

    assert swept >= 1
    assert after.result == Result.UNKNOWN_SESSION
    assert [r.quantity for r in records_of(runtime, tenant, sub)] == [12 * MB]
    assert balance_of(runtime, tenant, sub) == Decimal("0.88")


def test_the_same_call_costs_the_same_online_as_from_a_record(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    # A card with a connect fee and 60 s increments: splitting a call would change its price.
    rate_card(tenant.api, ("2020-01-01", [rate_line("33", price="0.127", connect_fee="0.093")]))
    online_line = line_on(tenant.api, allowances={"data_mb": 0, "voice_minutes": 1, "sms": 0})
    record_line = line_on(tenant.api, allowances={"data_mb": 0, "voice_minutes": 1, "sms": 0})
    called = "33612345678"
    started = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    for line in (online_line, record_line):
        backdate_line(runtime, line["id"], started - dt.timedelta(hours=1))
    call = Session(charging, online_line, Service.VOICE)

    call.open(UnitRequest(0), called_number=called, at=started)
    call.update(UnitRequest(0, used=70, requested=60))
    call.update(UnitRequest(0, used=60))
    call.release(UnitRequest(0, used=55))  # 185 s: 60 from the allowance, 125 beyond
    settle(runtime, charging)
    posted = tenant.api.post(
        "/v1/usage-records",
        {
            "records": [
                {
                    "record_id": f"cdr-{secrets.token_hex(4)}",
                    "subscription": record_line["id"],
                    "service": "voice",
                    "started_at": started.isoformat(),
                    "duration": 185,
                    "called_number": called,
                }
            ]
        },
    )
    assert posted.status_code == 200, posted.json

    online, offline = records_of(runtime, tenant, online_line), records_of(runtime, tenant, record_line)
    assert [r.quantity for r in online] == [185]
    assert online[0].amount == offline[0].amount == Decimal("0.381")  # 3 increments of 0.127, no connect fee
    assert online[0].amount_exact == offline[0].amount_exact
    assert online[0].allowance_used == offline[0].allowance_used == 60


def test_an_unknown_subscriber_and_a_suspended_line_are_refused(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api)
    stranger = Session(charging, {"msisdn": "999" + secrets.token_hex(4)[:6]})
    assert stranger.open(UnitRequest(1)).result == Result.USER_UNKNOWN
    # Lines are suspended by provisioning's orders; here the state is set as such an order leaves it.
    with runtime.db.transaction(platform=True) as session:
        session.execute(update(Subscription).where(Subscription.id == sub["id"]).values(status="suspended"))
    charging.forget()
    answer = Session(charging, sub).open(UnitRequest(1))
    assert (answer.result, grant(answer).result) == (Result.SERVICE_DENIED, Result.SERVICE_DENIED)


def test_a_postpaid_line_uses_its_allowance_then_pays_on_its_invoice(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api)  # 1000 MB included, 0.01 per MB beyond, no money balance
    session = Session(charging, sub)
    opened = session.open(UnitRequest(1, requested=600 * MB))
    more = session.update(UnitRequest(1, used=600 * MB, requested=600 * MB))
    session.release(UnitRequest(1, used=500 * MB))
    settle(runtime, charging)

    assert grant(opened).granted == grant(more).granted == 600 * MB  # nothing caps a postpaid line's overage
    (record,) = records_of(runtime, tenant, sub)
    assert (record.quantity, record.allowance_used, record.amount, record.prepaid) == (
        1100 * MB,
        1000 * MB,
        Decimal("1.00"),
        False,
    )


def test_a_report_that_asks_for_nothing_more_is_charged_and_granted_nothing(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")
    session = Session(charging, sub)
    session.open(UnitRequest(1, requested=30 * MB))

    report = session.update(UnitRequest(1, used=12 * MB, requested=0))
    other = Session(charging, sub).open(UnitRequest(1, requested=100 * MB))

    assert (grant(report).result, grant(report).granted, grant(report).final_unit) == (Result.SUCCESS, None, None)
    # Only what was used stays held: the rest of the first grant is there for another session.
    assert grant(other).granted == 88 * MB


def test_usage_arriving_as_records_during_a_session_is_not_granted_again(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "0.50")  # 50 MB
    session = Session(charging, sub)
    assert grant(session.open(UnitRequest(1, requested=20 * MB))).granted == 20 * MB

    # The network also reports 20 MB of other use as a record (it did not ask for it).
    posted = tenant.api.post(
        "/v1/usage-records",
        {
            "records": [
                {
                    "record_id": f"r-{secrets.token_hex(4)}",
                    "subscription": sub["id"],
                    "service": "data",
                    "started_at": sub["activated_at"],
                    "volume": 20 * MB,
                }
            ]
        },
    )
    assert posted.status_code == 200, posted.json
    more = session.update(UnitRequest(1, used=20 * MB, requested=30 * MB))

    # 50 MB of money: 20 used online, 20 by the record, 10 left to grant.
    assert (grant(more).granted, grant(more).final_unit is not None) == (10 * MB, True)


def test_two_processes_charging_one_line_each_see_what_the_other_granted(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    # Each engine remembers what it wrote last; the other's writes make that stale, and it must notice.
    other = OnlineCharging(runtime.db, charging.store)
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")  # 100 MB
    here, there = Session(charging, sub), Session(other, sub)

    assert grant(here.open(UnitRequest(1, requested=50 * MB))).granted == 50 * MB
    assert grant(there.open(UnitRequest(1, requested=30 * MB))).granted == 30 * MB
    more = here.update(UnitRequest(1, used=50 * MB, requested=30 * MB))

    assert (grant(more).granted, grant(more).final_unit is not None) == (20 * MB, True)


def test_expired_terms_are_read_again_for_every_expired_line_in_one_query(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = [line_on(tenant.api) for _ in range(3)]
    for sub in subs:
        assert Session(charging, sub).open(UnitRequest(1, requested=MB)).result == Result.SUCCESS
    # Every line's terms expire at once, as they do in a process that read them TERMS_TTL_S ago.
    with charging._cache.lock:
        charging._cache.terms = {line: (0.0, *rest) for line, (_, *rest) in charging._cache.terms.items()}
    reads: list[list[str]] = []

    def counted(session: Any, lines: Any) -> Any:
        reads.append(sorted(lines))
        return line_terms(session, lines)

    monkeypatch.setattr(credit, "line_terms", counted)
    first = Session(charging, subs[0]).open(UnitRequest(1, requested=MB)).result
    read_by_the_first = len(reads)
    others = [Session(charging, sub).open(UnitRequest(1, requested=MB)).result for sub in subs[1:]]

    assert [first, *others] == [Result.SUCCESS] * 3
    ours = {sub["id"] for sub in subs}
    # One query for this tenant's lines (the process may hold other tenants' lines, each tenant read apart).
    assert [lines for lines in reads if ours & set(lines)] == [sorted(ours)]
    assert len(reads) == read_by_the_first
