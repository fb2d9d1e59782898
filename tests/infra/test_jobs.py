"""Jobs are never lost: outbox in the asking transaction, relay, idempotent actors, retries, dead letters.

Most tests run on a runtime of this module's own (its own database, one worker thread, no relay
thread), so they decide when rows are relayed and when jobs run. The tests of the real actors run on
the suite-wide runtime, through the API.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import httpx
import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

import mvne.charging.actors as charging_actors
import mvne.provisioning.actors as provisioning_actors
from mvne.catalog import service as catalog
from mvne.charging import billing
from mvne.charging.models import Invoice
from mvne.esim.models import Sim
from mvne.infra.db import Database, utcnow
from mvne.infra.jobs import (
    JOBS,
    QUEUE_DEFAULT,
    QUEUE_PROVISIONING,
    QUEUES,
    DeadLetter,
    OutboxMessage,
    PermanentJobError,
    enqueue,
    job,
    job_figures,
    relay_once,
    replay_dead_letter,
    resend_expired,
)
from mvne.infra.migrate import upgrade
from mvne.infra.runtime import Runtime, current_runtime, set_runtime
from mvne.infra.settings import Settings
from mvne.platform.app import create_app
from mvne.platform.auth import OPERATOR_SCOPES
from mvne.platform.cli import main as mvne_cli
from mvne.platform.wiring import load_actor_modules
from mvne.provisioning import service as provisioning
from mvne.provisioning.models import PhoneNumber, Subscription
from mvne.tenants.models import Event, Tenant
from mvne.tenants.service import create_customer, create_tenant, issue_api_client
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_server_url
from tests.support.api import (
    ApiCaller,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    last_period,
    published_offer,
    token_for,
    wait_for,
)
from tests.support.runtimes import process_globals_kept, side_runtime

# Test-only jobs, registered before any broker is built so every broker binds them -----------------

CALLS: list[dict[str, Any]] = []
FAILURES: list[str] = []
BROKEN: set[str] = set()


@job("tests.record_call")
def record_call(token: str, **values: Any) -> None:
    CALLS.append({"token": token, **values})


@job("tests.always_fail")
def always_fail(token: str) -> None:
    FAILURES.append(token)
    raise RuntimeError(f"boom {token}")


@job("tests.refuse_while_broken")
def refuse_while_broken(token: str, tenant_id: str | None = None) -> None:
    """Refuses for good while its token is in BROKEN; records a call once repaired."""
    if token in BROKEN:
        FAILURES.append(token)
        raise PermanentJobError(f"cannot do {token}")
    CALLS.append({"token": token, "tenant_id": tenant_id})


@job("tests.health_ok", queue=QUEUE_PROVISIONING)
def health_ok(token: str) -> None:
    CALLS.append({"token": token})


@job("tests.health_refused")
def health_refused(token: str) -> None:
    raise PermanentJobError(f"cannot do {token}")


@job("tests.slow", lease_s=1)
def slow(token: str, seconds: float) -> None:
    """Outlives its one-second lease: its worker must keep the lease alive while it runs."""
    time.sleep(seconds)
    CALLS.append({"token": token})


OWNERS: dict[str, str] = {}  # token -> what the hooks made of the job's owner


def _owner_failed(session: Session, payload: dict[str, Any], error: str) -> None:
    # Called in the transaction that records the dead letter: the letter is there, not yet committed.
    letters = session.scalars(select(DeadLetter).where(DeadLetter.actor == "tests.owned")).all()
    seen = any(letter.payload.get("token") == payload["token"] for letter in letters)
    OWNERS[payload["token"]] = f"failed: {error}" + ("" if seen else " (no dead letter in the transaction)")


def _owner_replayed(session: Session, payload: dict[str, Any]) -> None:
    OWNERS[payload["token"]] = "replayed"


@job("tests.owned", on_dead_letter=_owner_failed, on_replay=_owner_replayed)
def owned(token: str) -> None:
    if token in BROKEN:
        raise PermanentJobError(f"cannot do {token}")
    CALLS.append({"token": token})
    OWNERS[token] = "done"


def _broken_hook(session: Session, payload: dict[str, Any], error: str) -> None:
    raise RuntimeError("the owner's hook is broken")


@job("tests.owned_by_a_broken_hook", on_dead_letter=_broken_hook)
def owned_by_a_broken_hook(token: str) -> None:
    raise PermanentJobError(f"cannot do {token}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """This module's runtime: its own database, one worker thread, retries after about a second."""
    values: dict[str, Any] = {
        "var_dir": tmp_path_factory.mktemp("jobs-var"),
        "port": _free_port(),
        "job_max_retries": 1,
        "log_format": "console",
        "log_level": "WARNING",
    }
    server = postgres_server_url()
    database_name = None
    if server:
        app_url, platform_url, owner_url, database_name = create_postgres_database(server)
        values.update(database_url=app_url, platform_database_url=platform_url, migration_database_url=owner_url)
    settings = Settings(**values).derived().check()
    upgrade(settings)
    try:
        with side_runtime(settings) as runtime:
            runtime.start_worker(threads=1)
            yield runtime
    finally:
        if server and database_name:
            drop_postgres_database(server, database_name)


def _token() -> str:
    return secrets.token_hex(6)


def _outbox_rows(db: Database, actor: str, token: str) -> list[OutboxMessage]:
    with db.transaction(platform=True) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.actor == actor)).all()
        return [row for row in rows if row.payload.get("token") == token]


def _dead_letters(db: Database, token: str) -> list[DeadLetter]:
    with db.transaction(platform=True) as session:
        rows = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        return [row for row in rows if row.payload.get("token") == token]


def _calls(token: str) -> list[dict[str, Any]]:
    return [call for call in CALLS if call["token"] == token]


# The outbox ---------------------------------------------------------------------------------------


def test_a_job_asked_for_in_a_transaction_that_rolls_back_is_never_sent_nor_run(rt: Runtime) -> None:
    token = _token()

    def change_that_fails() -> None:
        with rt.db.transaction(platform=True) as session:
            enqueue(session, "tests.record_call", token=token)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        change_that_fails()

    assert _outbox_rows(rt.db, "tests.record_call", token) == []
    rt.drain(timeout=10)
    assert _calls(token) == []


def test_a_committed_job_is_relayed_and_run_once_with_its_values(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token, amount="9.99", lines=["a", "b"])
    assert _calls(token) == []

    assert relay_once(rt.db, rt.broker) >= 1
    rt.drain(timeout=10)

    assert _calls(token) == [{"token": token, "amount": "9.99", "lines": ["a", "b"]}]


def test_a_tenant_job_carries_its_tenant_in_the_row_and_in_the_values(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", tenant_id="ten_jobs_test", token=token)

    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    assert row.tenant_id == "ten_jobs_test"
    assert row.queue == QUEUE_DEFAULT
    rt.drain(timeout=10)
    assert _calls(token) == [{"token": token, "tenant_id": "ten_jobs_test"}]


def test_asking_twice_with_the_same_key_keeps_one_outbox_row_and_runs_once(rt: Runtime) -> None:
    token = _token()
    for _ in range(2):
        with rt.db.transaction(platform=True) as session:
            enqueue(session, "tests.record_call", key=f"record-{token}", token=token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", key=f"record-{token}", token=token)
        enqueue(session, "tests.record_call", key=f"record-{token}", token=token)

    assert len(_outbox_rows(rt.db, "tests.record_call", token)) == 1
    rt.drain(timeout=10)
    assert len(_calls(token)) == 1

    with rt.db.transaction(platform=True) as session:  # asked again after it ran: still nothing new
        enqueue(session, "tests.record_call", key=f"record-{token}", token=token)
    rt.drain(timeout=10)
    assert len(_calls(token)) == 1


def test_a_relayed_row_is_marked_sent_and_never_relayed_again(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token)
    [before] = _outbox_rows(rt.db, "tests.record_call", token)
    assert before.sent_at is None

    relay_once(rt.db, rt.broker)
    rt.drain(timeout=10)

    [after] = _outbox_rows(rt.db, "tests.record_call", token)
    assert after.sent_at is not None
    assert after.sent_at >= before.created_at
    assert relay_once(rt.db, rt.broker) == 0
    rt.drain(timeout=10)
    assert len(_calls(token)) == 1


def test_a_job_due_later_stays_in_the_outbox_until_its_time(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token, delay=dt.timedelta(hours=1))
    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    try:
        relay_once(rt.db, rt.broker)

        [row] = _outbox_rows(rt.db, "tests.record_call", token)
        assert row.sent_at is None
        assert row.available_at >= utcnow() + dt.timedelta(minutes=59)
        assert _calls(token) == []
    finally:  # a row due in an hour would keep `drain()` waiting in the tests after this one
        with rt.db.transaction(platform=True) as session:
            session.execute(delete(OutboxMessage).where(OutboxMessage.id == row.id))


def test_asking_for_a_job_nobody_registered_is_refused_before_anything_is_written(rt: Runtime) -> None:
    with rt.db.transaction(platform=True) as session:
        with pytest.raises(ValueError, match="unknown job"):
            enqueue(session, "tests.no_such_job", token="x")
        assert session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.actor == "x")) == 0


# Retries and dead letters -------------------------------------------------------------------------


def test_a_job_that_keeps_failing_is_dead_lettered_after_its_retries_with_the_error(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.always_fail", token=token)

    rt.drain(timeout=15)

    assert FAILURES.count(token) == 2  # the first attempt and job_max_retries=1 retry
    [letter] = _dead_letters(rt.db, token)
    assert letter.actor == "tests.always_fail"
    assert letter.queue == QUEUE_DEFAULT
    assert letter.payload == {"token": token}
    assert letter.error == f"RuntimeError: boom {token}"
    assert f"boom {token}" in letter.traceback
    assert letter.attempts == 2
    assert letter.replayed_at is None
    [row] = _outbox_rows(rt.db, "tests.always_fail", token)
    assert letter.message_id == row.id


def test_a_permanent_error_is_dead_lettered_at_once_without_a_retry(rt: Runtime) -> None:
    token = _token()
    BROKEN.add(token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.refuse_while_broken", token=token)

    rt.drain(timeout=15)

    assert FAILURES.count(token) == 1
    [letter] = _dead_letters(rt.db, token)
    assert letter.error == f"PermanentJobError: cannot do {token}"
    assert letter.attempts == 1


def test_a_job_that_failed_for_good_is_counted_as_dead_in_the_job_metrics(rt: Runtime) -> None:
    labels = {"actor": "tests.refuse_while_broken", "outcome": "dead"}
    before = REGISTRY.get_sample_value("mvne_jobs_total", labels) or 0.0
    token = _token()
    BROKEN.add(token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.refuse_while_broken", token=token)

    rt.drain(timeout=15)

    assert FAILURES.count(token) == 1
    assert REGISTRY.get_sample_value("mvne_jobs_total", labels) == before + 1


def test_replaying_a_dead_letter_queues_its_job_again_once_with_its_tenant(rt: Runtime) -> None:
    token = _token()
    BROKEN.add(token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.refuse_while_broken", tenant_id="ten_replay", token=token)
    rt.drain(timeout=15)
    [letter] = _dead_letters(rt.db, token)
    assert letter.tenant_id == "ten_replay"
    BROKEN.discard(token)  # the cause is fixed; the operator replays

    with rt.db.transaction(platform=True) as session:
        replayed = replay_dead_letter(session, letter.id)
        assert replayed is not None
        first_replay = replayed.replayed_at
    with rt.db.transaction(platform=True) as session:
        again = replay_dead_letter(session, letter.id)
        assert again is not None
        assert again.replayed_at == first_replay

    assert first_replay is not None
    rows = _outbox_rows(rt.db, "tests.refuse_while_broken", token)
    assert len(rows) == 2
    assert {row.tenant_id for row in rows} == {"ten_replay"}
    rt.drain(timeout=15)
    assert _calls(token) == [{"token": token, "tenant_id": "ten_replay"}]
    assert len(_dead_letters(rt.db, token)) == 1


def test_replaying_a_dead_letter_that_does_not_exist_gives_nothing(rt: Runtime) -> None:
    with rt.db.transaction(platform=True) as session:
        assert replay_dead_letter(session, "dlq_does_not_exist") is None


# Leases: a job is owed until it has finished -------------------------------------------------------


def _lost_broker() -> StubBroker:
    """A broker nobody consumes: what a job sent to a Redis that then lost its data amounts to."""
    broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def test_a_relayed_row_counts_its_send_and_holds_a_lease_of_the_configured_length(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token)

    before = utcnow()
    relay_once(rt.db, _lost_broker(), lease_s=120)

    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    assert row.send_count == 1
    assert row.lease_until is not None
    assert before + dt.timedelta(seconds=119) <= row.lease_until <= utcnow() + dt.timedelta(seconds=120)
    assert row.finished_at is None
    assert resend_expired(rt.db) == 0
    with rt.db.transaction(platform=True) as session:  # not owed for two minutes: keep drain() from waiting
        session.execute(delete(OutboxMessage).where(OutboxMessage.id == row.id))


def test_a_job_lost_after_it_was_sent_is_sent_again_once_its_lease_runs_out_and_runs_once(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token)
    relay_once(rt.db, _lost_broker(), lease_s=0)  # sent, then lost with the broker; the lease is already over
    [lost] = _outbox_rows(rt.db, "tests.record_call", token)
    assert (lost.send_count, lost.finished_at) == (1, None)

    assert resend_expired(rt.db) >= 1
    assert relay_once(rt.db, rt.broker) >= 1
    rt.drain(timeout=10)

    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    assert row.send_count == 2
    assert row.finished_at is not None
    assert _calls(token) == [{"token": token}]
    assert resend_expired(rt.db) == 0
    figures = job_figures(rt.db, actor="tests.record_call")
    assert figures.resent >= 1
    assert figures.sent == figures.jobs + figures.resent - (figures.jobs - figures.finished - figures.unfinished)


def test_a_message_delivered_again_after_its_job_finished_is_skipped(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token)
    relay_once(rt.db, rt.broker)
    rt.drain(timeout=10)
    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    finished_at = row.finished_at
    assert finished_at is not None

    # The broker delivers the same message again (a dead worker's unacknowledged message, a resend).
    for _ in range(2):
        rt.broker.enqueue(
            dramatiq.Message(
                queue_name=row.queue,
                actor_name=row.actor,
                args=(),
                kwargs=row.payload,
                options={},
                message_id=row.id,
            )
        )
    rt.drain(timeout=10)

    assert _calls(token) == [{"token": token}]
    [after] = _outbox_rows(rt.db, "tests.record_call", token)
    assert after.finished_at == finished_at


def test_a_message_delivered_while_another_delivery_runs_its_job_is_dropped_and_the_job_stays_owed(
    rt: Runtime,
) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.record_call", token=token)
    relay_once(rt.db, _lost_broker())  # the first delivery went to a worker elsewhere, which holds it
    [row] = _outbox_rows(rt.db, "tests.record_call", token)
    with rt.db.transaction(platform=True) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)
            .values(claimed_until=utcnow() + dt.timedelta(seconds=60), lease_until=utcnow() + dt.timedelta(seconds=60))
        )
    message = dramatiq.Message(
        queue_name=row.queue, actor_name=row.actor, args=(), kwargs=row.payload, options={}, message_id=row.id
    )

    rt.broker.enqueue(message)  # a duplicate reaches this worker meanwhile
    rt.drain(timeout=10)
    assert _calls(token) == []
    [held] = _outbox_rows(rt.db, "tests.record_call", token)
    assert held.finished_at is None  # still owed: the holder finishes it, or its lease runs out

    with rt.db.transaction(platform=True) as session:  # the holder died: claim and lease ran out
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)
            .values(claimed_until=utcnow() - dt.timedelta(seconds=1), lease_until=utcnow() - dt.timedelta(seconds=1))
        )
    assert resend_expired(rt.db) >= 1
    relay_once(rt.db, rt.broker)
    rt.drain(timeout=10)
    assert _calls(token) == [{"token": token}]
    [done] = _outbox_rows(rt.db, "tests.record_call", token)
    assert (done.send_count, done.finished_at is not None) == (2, True)


def test_a_job_running_longer_than_its_lease_keeps_it_alive_and_is_not_sent_again(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.slow", token=token, seconds=2.5)
    relay_once(rt.db, rt.broker, lease_s=300)  # the job's own lease (1 s) wins over the default

    [row] = _outbox_rows(rt.db, "tests.slow", token)
    assert row.lease_until is not None
    assert row.lease_until <= utcnow() + dt.timedelta(seconds=1)
    resent = 0
    deadline = time.monotonic() + 15
    while not _calls(token) and time.monotonic() < deadline:
        resent += resend_expired(rt.db)
        time.sleep(0.2)
    rt.drain(timeout=10)

    assert resent == 0
    assert _calls(token) == [{"token": token}]
    [row] = _outbox_rows(rt.db, "tests.slow", token)
    assert (row.send_count, row.finished_at is not None) == (1, True)


def test_a_job_with_a_nonsense_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        job("tests.no_lease", lease_s=0)


# Owners of jobs that failed for good ---------------------------------------------------------------


def test_a_dead_lettered_job_marks_its_owner_failed_in_the_same_transaction_and_a_replay_reopens_it(
    rt: Runtime,
) -> None:
    token = _token()
    BROKEN.add(token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.owned", token=token)
    rt.drain(timeout=15)

    assert OWNERS[token] == f"failed: PermanentJobError: cannot do {token}"
    [letter] = _dead_letters(rt.db, token)
    [row] = _outbox_rows(rt.db, "tests.owned", token)
    assert (row.send_count, row.finished_at is not None) == (1, True)

    BROKEN.discard(token)
    with rt.db.transaction(platform=True) as session:
        replay_dead_letter(session, letter.id)
    assert OWNERS[token] == "replayed"
    rt.drain(timeout=15)
    assert OWNERS[token] == "done"
    assert _calls(token) == [{"token": token}]


def test_a_failing_owner_hook_does_not_keep_the_job_from_its_dead_letter(rt: Runtime) -> None:
    token = _token()
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.owned_by_a_broken_hook", token=token)
    rt.drain(timeout=15)

    [letter] = _dead_letters(rt.db, token)
    assert letter.error == f"PermanentJobError: cannot do {token}"
    [row] = _outbox_rows(rt.db, "tests.owned_by_a_broken_hook", token)
    assert row.finished_at is not None


def test_a_billing_run_whose_job_fails_for_good_is_failed_with_the_reason_and_resumes_when_replayed(
    rt: Runtime,
) -> None:
    """The real billing actors run on this module's runtime, made the current one for the test."""
    with process_globals_kept():
        set_runtime(rt)
        _fail_and_replay_a_billing_run(rt)


def _fail_and_replay_a_billing_run(rt: Runtime) -> None:
    period, _ = last_period()
    with rt.db.transaction(platform=True) as session:
        tenant = create_tenant(
            session, name="Jobs", slug=f"jobs-{_token()}", country="FR", currency="EUR", timezone="Europe/Paris"
        )
        tenant_id = tenant.id
    with rt.db.transaction(tenant_id=tenant_id) as session:
        run_id = billing.start_billing_run(session, tenant_id=tenant_id, period=period).id
        # The tenant's zone breaks after the run was asked for: its job fails on every attempt.
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(timezone="Nowhere/Atlantis"))
    rt.drain(timeout=20)

    with rt.db.transaction(tenant_id=tenant_id) as session:
        run = billing.get_billing_run(session, run_id)
        assert run.status == "failed"
        assert run.failure_reason is not None
        assert "Nowhere/Atlantis" in run.failure_reason
        events = session.scalars(select(Event.type).where(Event.object_id == run_id).order_by(Event.id)).all()
        assert list(events) == ["billing_run.created", "billing_run.failed"]
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(timezone="Europe/Paris"))
        # A failed run no longer holds its period: a new run may start (undone here, the old one resumes).
        with session.begin_nested() as savepoint:
            assert billing.start_billing_run(session, tenant_id=tenant_id, period=period).id != run_id
            savepoint.rollback()
    with rt.db.transaction(platform=True) as session:
        [letter] = session.scalars(select(DeadLetter).where(DeadLetter.tenant_id == tenant_id)).all()
        assert letter.actor == "charging.execute_billing_run"
        replay_dead_letter(session, letter.id)
    with rt.db.transaction(tenant_id=tenant_id) as session:
        assert billing.get_billing_run(session, run_id).status == "pending"
    rt.drain(timeout=20)

    with rt.db.transaction(tenant_id=tenant_id) as session:
        run = billing.get_billing_run(session, run_id)
        assert (run.status, run.failure_reason, run.customers_total) == ("completed", None, 0)
        events = session.scalars(select(Event.type).where(Event.object_id == run_id).order_by(Event.id)).all()
        assert list(events)[-3:] == ["billing_run.resumed", "billing_run.started", "billing_run.completed"]


def test_a_line_whose_activation_job_fails_for_good_is_failed_with_the_reason_and_pending_again_on_replay(
    rt: Runtime,
) -> None:
    """Nothing answers at this runtime's SM-DP+ address: activation fails on every attempt."""
    with process_globals_kept():
        set_runtime(rt)
        with rt.db.transaction(platform=True) as session:
            slug = f"jobs-{_token()}"
            tenant_id = provisioning.onboard_tenant(
                session,
                name=slug,
                slug=slug,
                country="FR",
                currency="EUR",
                timezone="Europe/Paris",
                box=provisioning_actors.secret_box(rt.settings),
                pool_size=1,
            ).id
        with rt.db.transaction(tenant_id=tenant_id) as session:
            offer = catalog.create_offer(
                session,
                code="J1",
                name="Jobs 1",
                currency="EUR",
                terms=catalog.OfferTerms(
                    price=Decimal("9.99"),
                    data_mb=1,
                    voice_minutes=1,
                    sms=1,
                    overage_data_per_mb=Decimal("0.01"),
                    overage_voice_per_minute=Decimal("0.01"),
                    overage_sms_per_message=Decimal("0.01"),
                ),
            )
            catalog.publish_offer(session, offer.id)
            buyer = create_customer(session, name="Jo", email=f"{_token()}@example.com", address={})
            line_id = provisioning.request_subscription(
                session, tenant_id=tenant_id, customer_id=buyer.id, offer_id=offer.id, sim_type="esim"
            ).id
        rt.drain(timeout=30)

        with rt.db.transaction(tenant_id=tenant_id) as session:
            line = session.get(Subscription, line_id)
            assert line is not None
            assert (line.status, line.failure_code) == ("failed", provisioning.ACTIVATION_JOB_FAILED)
            assert line.failure_reason
            events = session.scalars(select(Event.type).where(Event.object_id == line_id).order_by(Event.id)).all()
            assert list(events) == ["subscription.created", "subscription.failed"]
        with rt.db.transaction(platform=True) as session:
            [letter] = session.scalars(
                select(DeadLetter).where(
                    DeadLetter.tenant_id == tenant_id, DeadLetter.actor == "provisioning.activate_subscription"
                )
            ).all()
            assert letter.error == line.failure_reason
            replay_dead_letter(session, letter.id)
        with rt.db.transaction(tenant_id=tenant_id) as session:
            line = session.get(Subscription, line_id)
            assert line is not None
            assert (line.status, line.failure_code, line.failure_reason) == ("pending", None, None)
        rt.drain(timeout=30)  # still nothing at the SM-DP+ address: failed again, with a new dead letter
        with rt.db.transaction(tenant_id=tenant_id) as session:
            line = session.get(Subscription, line_id)
            assert line is not None
            assert line.status == "failed"


# The dead-letter API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_app(rt: Runtime) -> Flask:
    return create_app(rt=rt)


def _operator_api(app: Flask, rt: Runtime, scopes: tuple[str, ...]) -> ApiCaller:
    client: FlaskClient = app.test_client()
    with rt.db.transaction(platform=True) as session:
        issued = issue_api_client(
            session, tenant_id=None, name="jobs operator", scopes=list(scopes), allowed=OPERATOR_SCOPES
        )
    return ApiCaller(client, token_for(client, issued.client_id, issued.client_secret))


def _listed(api: ApiCaller) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"starting_after": after} if after else {})
        response = api.get("/v1/dead-letters", **params)
        assert response.status_code == 200, response.json
        items += response.json["data"]
        if not response.json["has_more"]:
            return items
        after = items[-1]["id"]


def test_an_operator_lists_dead_letters_and_replays_one_once_over_the_api(rt: Runtime, jobs_app: Flask) -> None:
    api = _operator_api(jobs_app, rt, OPERATOR_SCOPES)
    token = _token()
    BROKEN.add(token)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.refuse_while_broken", token=token)
    rt.drain(timeout=15)

    [shown] = [item for item in _listed(api) if item["payload"].get("token") == token]
    assert shown["actor"] == "tests.refuse_while_broken"
    assert shown["queue"] == QUEUE_DEFAULT
    assert shown["error"] == f"PermanentJobError: cannot do {token}"
    assert shown["replayed_at"] is None
    assert shown["failed_at"].endswith(("Z", "+00:00"))
    assert "traceback" not in shown

    BROKEN.discard(token)
    replayed = api.post(f"/v1/dead-letters/{shown['id']}/replay")
    assert replayed.status_code == 202, replayed.json
    assert replayed.json["id"] == shown["id"]
    assert replayed.json["replayed_at"] is not None
    again = api.post(f"/v1/dead-letters/{shown['id']}/replay")
    assert again.status_code == 202, again.json
    assert again.json["replayed_at"] == replayed.json["replayed_at"]

    assert len(_outbox_rows(rt.db, "tests.refuse_while_broken", token)) == 2
    rt.drain(timeout=15)
    assert len(_calls(token)) == 1
    [listed] = [item for item in _listed(api) if item["payload"].get("token") == token]
    assert listed["replayed_at"] == replayed.json["replayed_at"]


def test_replaying_an_unknown_dead_letter_over_the_api_is_a_404_problem(rt: Runtime, jobs_app: Flask) -> None:
    api = _operator_api(jobs_app, rt, OPERATOR_SCOPES)

    response = api.post("/v1/dead-letters/dlq_nope/replay")

    assert response.status_code == 404
    assert response.content_type.startswith("application/problem+json")


def test_dead_letters_are_closed_to_callers_without_the_operations_scopes(rt: Runtime, jobs_app: Flask) -> None:
    reader = _operator_api(jobs_app, rt, ("tenants:read",))
    anonymous = ApiCaller(jobs_app.test_client())

    assert reader.get("/v1/dead-letters").status_code == 403
    assert reader.post("/v1/dead-letters/dlq_x/replay").status_code == 403
    assert anonymous.get("/v1/dead-letters").status_code == 401


def test_an_operator_sees_each_jobs_sends_resends_finished_owed_overdue_and_dead_letters(
    rt: Runtime, jobs_app: Flask
) -> None:
    api = _operator_api(jobs_app, rt, ("operations:read",))
    tokens = [_token() for _ in range(4)]
    with rt.db.transaction(platform=True) as session:
        for token in tokens[:2]:
            enqueue(session, "tests.health_ok", token=token)
        enqueue(session, "tests.health_refused", token=tokens[3])
    rt.drain(timeout=10)
    with rt.db.transaction(platform=True) as session:
        enqueue(session, "tests.health_ok", token=tokens[2])
    relay_once(rt.db, _lost_broker(), lease_s=0)  # sent, lost with its broker, its lease already over

    response = api.get("/v1/job-health")

    assert response.status_code == 200, response.json
    health = {row["actor"]: row for row in response.json["data"]}
    ok = health["tests.health_ok"]
    assert (ok["queue"], ok["jobs"], ok["sent"], ok["resent"], ok["finished"]) == ("provisioning", 3, 3, 0, 2)
    assert (ok["owed"], ok["overdue"], ok["dead_letters"]) == (1, 1, 0)
    assert ok["oldest_owed_at"] is not None
    refused = health["tests.health_refused"]
    assert (refused["jobs"], refused["finished"], refused["owed"], refused["dead_letters"]) == (1, 1, 0, 1)

    # The lost job is sent again and finishes: nothing owed, one resend on record.
    resend_expired(rt.db)
    rt.drain(timeout=10)
    again = {row["actor"]: row for row in api.get("/v1/job-health").json["data"]}["tests.health_ok"]
    assert (again["sent"], again["resent"], again["finished"], again["owed"], again["overdue"]) == (4, 1, 3, 0, 0)
    assert again["oldest_owed_at"] is None
    assert _operator_api(jobs_app, rt, ("tenants:read",)).get("/v1/job-health").status_code == 403


# Queues and the worker command --------------------------------------------------------------------


def test_every_queue_is_used_by_a_job_and_every_job_uses_a_known_queue() -> None:
    load_actor_modules()
    application_jobs = {name: spec for name, spec in JOBS.items() if not name.startswith("tests.")}

    assert {spec.queue for spec in application_jobs.values()} == set(QUEUES)
    with pytest.raises(ValueError, match="unknown queue"):
        job("tests.nowhere", queue="no-such-queue")


def test_mvne_worker_runs_dramatiq_on_the_worker_module_consuming_every_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched: list[tuple[str, list[str]]] = []
    # The command replaces its process with dramatiq; record what it would exec instead.
    for name in ("execv", "execve", "execvp", "execvpe"):
        monkeypatch.setattr(os, name, lambda file, args, *_: launched.append((file, list(args))))

    result = CliRunner().invoke(mvne_cli, ["worker", "--processes", "3", "--threads", "5"])

    assert result.exit_code == 0, result.output
    [(_, argv)] = launched
    assert argv[:4] == [sys.executable, "-m", "dramatiq", "mvne.platform.worker"]
    assert argv[argv.index("--processes") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "5"
    consumed = argv[argv.index("--queues") + 1 :]
    load_actor_modules()
    assert set(consumed) == set(QUEUES)
    assert {spec.queue for spec in JOBS.values()} <= set(consumed)


# The real actors are safe to run twice (suite-wide runtime, through the API) ---------------------


def _billed(tenant: TenantHandle) -> tuple[dict[str, Any], dict[str, Any]]:
    offer = published_offer(tenant.api)
    buyer = customer(tenant.api)
    line = active_subscription(tenant.api, buyer["id"], offer["id"])
    period, period_start = last_period()
    backdate_line(current_runtime(), line["id"], period_start)
    started = tenant.api.post("/v1/billing-runs", {"period": period})
    assert started.status_code == 202, started.json

    def finished() -> dict[str, Any] | None:
        run = tenant.api.get(f"/v1/billing-runs/{started.json['id']}").json
        return run if run["status"] not in ("pending", "running") else None

    run = wait_for(finished, what="the billing run")
    assert (run["status"], run["customers_total"], run["invoices_created"]) == ("completed", 1, 1), run
    return run, buyer


def _invoices(tenant: TenantHandle) -> list[dict[str, Any]]:
    response = tenant.api.get("/v1/invoices", limit=100)
    assert response.status_code == 200, response.json
    return list(response.json["data"])


def test_executing_a_billing_run_again_leaves_one_invoice_and_the_same_counts(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    assert current_runtime() is runtime
    run, buyer = _billed(tenant)
    [invoice] = _invoices(tenant)

    billing.execute_billing_run(runtime.db, tenant_id=tenant.id, billing_run_id=run["id"])
    charging_actors.execute_billing_run(tenant_id=tenant.id, billing_run_id=run["id"])

    assert [(i["id"], i["number"], i["total"]) for i in _invoices(tenant)] == [
        (invoice["id"], invoice["number"], invoice["total"])
    ]
    again = tenant.api.get(f"/v1/billing-runs/{run['id']}").json
    for field in ("status", "customers_total", "customers_done", "invoices_created", "invoices_existing", "failures"):
        assert again[field] == run[field], field
    assert again["completed_at"] == run["completed_at"]

    second = tenant.api.post("/v1/billing-runs", {"period": run["period"]})
    assert second.status_code == 202, second.json
    finished = wait_for(
        lambda: (r := tenant.api.get(f"/v1/billing-runs/{second.json['id']}").json)["status"] == "completed" and r,
        what="the second billing run",
    )
    assert (finished["invoices_created"], finished["invoices_existing"]) == (0, 1)
    assert [i["customer"] for i in _invoices(tenant)] == [buyer["id"]]


def test_rendering_an_invoice_pdf_again_keeps_the_one_stored_document(tenant: TenantHandle, runtime: Runtime) -> None:
    _billed(tenant)
    [shown] = _invoices(tenant)

    def stored_key() -> str | None:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            invoice = session.get(Invoice, shown["id"])
            assert invoice is not None
            return invoice.pdf_key

    key = wait_for(stored_key, what="the invoice PDF job")
    prefix = f"tenants/{tenant.id}/invoices/"
    first = runtime.storage.get(key)

    charging_actors.render_invoice_pdf(tenant_id=tenant.id, invoice_id=shown["id"])
    charging_actors.render_invoice_pdf(tenant_id=tenant.id, invoice_id=shown["id"])

    assert stored_key() == key
    assert runtime.storage.list(prefix) == [key]
    assert runtime.storage.get(key) == first
    assert first.startswith(b"%PDF")


def test_activating_an_already_active_line_again_changes_nothing(tenant: TenantHandle, runtime: Runtime) -> None:
    offer = published_offer(tenant.api)
    buyer = customer(tenant.api)
    line = active_subscription(tenant.api, buyer["id"], offer["id"])

    def snapshot() -> dict[str, Any]:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            sub = session.get(Subscription, line["id"])
            assert sub is not None
            sim = session.get(Sim, sub.sim_id)
            assert sim is not None
            events = session.scalars(select(Event.type).where(Event.object_id == sub.id).order_by(Event.id)).all()
            numbers = session.scalars(select(PhoneNumber.msisdn).where(PhoneNumber.subscription_id == sub.id)).all()
            stored = {
                "line": (sub.status, sub.msisdn, sub.sim_id, sub.activated_at, sub.network_provisioned_at),
                "sim": (sim.status, sim.smdp_state, sim.matching_id, sim.activation_code, sim.updated_at),
                "events": list(events),
                "numbers": list(numbers),
            }
            imsi = sim.imsi
        # Outside the transaction: on SQLite it holds the write lock the app would wait for.
        network = httpx.get(f"{runtime.settings.network_url}/subscribers/{imsi}", timeout=10)
        assert network.status_code == 200, network.text
        shown = tenant.api.get(f"/v1/subscriptions/{line['id']}")
        assert shown.status_code == 200, shown.json
        api = shown.json
        # Download links are signed with the time they were made: compare what they point at.
        api["esim"]["qr_code_url"] = api["esim"]["qr_code_url"].split("?", 1)[0]
        return {**stored, "network": network.json(), "api": api}

    before = snapshot()
    assert before["events"].count("subscription.activated") == 1
    settings = runtime.settings

    status = provisioning.activate_subscription(
        runtime.db,
        tenant_id=tenant.id,
        subscription_id=line["id"],
        smdp=provisioning_actors.smdp_client(settings),
        network=provisioning_actors.network_client(settings),
        storage=runtime.storage,
        box=provisioning_actors.secret_box(settings),
    )
    provisioning_actors.activate_subscription(tenant_id=tenant.id, subscription_id=line["id"])

    assert status == "active"
    assert snapshot() == before
