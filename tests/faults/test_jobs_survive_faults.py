"""Jobs are never lost: a worker killed mid billing run, a Redis flushed with jobs in it, a job failing for good.

Real processes on PostgreSQL and Redis (see conftest.py); the end state is read from the database.
Each test prints its figures (jobs sent, resent, finished; how long things took): run pytest with -s.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from decimal import Decimal

import httpx
import redis
from sqlalchemy import func, select, update

from mvne.catalog.service import OfferTerms, create_offer, publish_offer
from mvne.charging import billing
from mvne.charging.models import BillingRun, Invoice
from mvne.esim.models import Sim
from mvne.infra.crypto import SecretBox
from mvne.infra.ids import new_id
from mvne.infra.jobs import DeadLetter, JobFigures, replay_dead_letter
from mvne.provisioning.models import PhoneNumber, Subscription
from mvne.provisioning.service import onboard_tenant, request_subscription
from mvne.tenants.models import Event, Tenant
from mvne.tenants.service import create_customer, create_tenant
from tests.faults.conftest import LEASE_S, MAX_RETRIES, Plant

ZONE = "Europe/Paris"
CHUNK = ("charging.invoice_billing_chunk",)
TERMS = OfferTerms(
    price=Decimal("20.00"),
    data_mb=1000,
    voice_minutes=60,
    sms=10,
    overage_data_per_mb=Decimal("0.01"),
    overage_voice_per_minute=Decimal("0.20"),
    overage_sms_per_message=Decimal("0.10"),
)


def _figures(label: str, figures: JobFigures) -> str:
    return (
        f"{label}: {figures.jobs} jobs, sent {figures.sent}, resent {figures.resent}, "
        f"finished {figures.finished}, unfinished {figures.unfinished}, dead letters {figures.dead_letters}"
    )


# Seeding through the services, on the plant's database ---------------------------------------------


def _tenant(plant: Plant) -> str:
    with plant.db.transaction(platform=True) as session:
        slug = f"faults-{secrets.token_hex(4)}"
        return create_tenant(session, name=slug, slug=slug, country="FR", currency="EUR", timezone=ZONE).id


def _offer(plant: Plant, tenant_id: str) -> str:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        offer = create_offer(session, code="F20", name="Faults 20", currency="EUR", terms=TERMS)
        publish_offer(session, offer.id)
        return offer.id


def _customers(plant: Plant, tenant_id: str, count: int) -> list[str]:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        return [
            create_customer(
                session,
                name=f"Customer {n}",
                email=f"c{n}-{secrets.token_hex(3)}@example.com",
                address={"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
            ).id
            for n in range(count)
        ]


def _billable_lines(plant: Plant, tenant_id: str, offer_id: str, customer_ids: list[str], since: dt.datetime) -> None:
    """Active lines since the start of the last period, as lines migrated from another platform would be."""
    with plant.db.transaction(tenant_id=tenant_id) as session:
        for n, customer_id in enumerate(customer_ids):
            session.add(
                Subscription(
                    id=new_id("sub"),
                    customer_id=customer_id,
                    offer_id=offer_id,
                    sim_type="esim",
                    status="active",
                    msisdn=f"+3378{secrets.randbelow(10**4):04d}{n:04d}",
                    activated_at=since,
                )
            )


def _run(plant: Plant, tenant_id: str, run_id: str) -> BillingRun:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        return billing.get_billing_run(session, run_id)


def _invoices(plant: Plant, tenant_id: str, period: str) -> tuple[int, int]:
    """(invoices of the period, distinct customers invoiced for it)."""
    with plant.db.transaction(tenant_id=tenant_id) as session:
        count, customers = session.execute(
            select(func.count(Invoice.id), func.count(func.distinct(Invoice.customer_id))).where(
                Invoice.period == period
            )
        ).one()
        return int(count), int(customers)


def _events(plant: Plant, tenant_id: str, object_id: str) -> list[str]:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        return list(session.scalars(select(Event.type).where(Event.object_id == object_id).order_by(Event.id)))


# (a) A worker killed with SIGKILL halfway through a billing run --------------------------------------


def test_a_billing_run_whose_worker_is_killed_mid_run_resumes_and_invoices_each_customer_once(plant: Plant) -> None:
    customers = 180
    period, period_start = billing.last_ended_period(ZONE)
    tenant_id = _tenant(plant)
    offer_id = _offer(plant, tenant_id)
    _billable_lines(plant, tenant_id, offer_id, _customers(plant, tenant_id, customers), period_start)
    plant.start_scheduler()
    plant.start_worker("worker-1", threads=2)

    with plant.db.transaction(tenant_id=tenant_id) as session:
        run_id = billing.start_billing_run(session, tenant_id=tenant_id, period=period).id
    began = time.monotonic()
    plant.poll(
        lambda: _invoices(plant, tenant_id, period)[0] >= 20, timeout=60, what="the run's first invoices", every=0.02
    )
    plant.kill("worker-1")
    killed_after = time.monotonic() - began
    invoiced_at_kill, _ = _invoices(plant, tenant_id, period)
    at_kill = _run(plant, tenant_id, run_id)
    assert at_kill.status == "running", f"the kill landed after the run ended: {at_kill.status}"
    assert invoiced_at_kill < customers, "the kill landed after every customer was invoiced"

    restarted = time.monotonic()
    plant.start_worker("worker-2", threads=2)
    run = plant.poll(
        lambda: (r := _run(plant, tenant_id, run_id)).status not in ("pending", "running") and r,
        timeout=90,
        what="the billing run to end after the worker was restarted",
        every=0.2,
    )
    resumed_in = time.monotonic() - restarted
    chunks = plant.poll(
        lambda: (f := plant.figures(actor="charging.invoice_billing_chunk", tenant_id=tenant_id)).unfinished == 0 and f,
        timeout=30,
        what="the chunk jobs to be recorded finished",
    )
    report = "\n".join(
        [
            f"billing run over {customers} customers in {run.chunks_total} chunks; worker killed after "
            f"{killed_after:.1f} s at {invoiced_at_kill} invoices; run {run.status} {resumed_in:.1f} s after "
            f"the restart (lease {LEASE_S} s)",
            _figures("run job", plant.figures(actor="charging.execute_billing_run", tenant_id=tenant_id)),
            _figures("chunk jobs", chunks),
            _figures("invoice PDF jobs", plant.figures(actor="charging.render_invoice_pdf", tenant_id=tenant_id)),
        ]
    )
    print(f"\n{report}")

    assert run.status == "completed", report
    assert (run.customers_total, run.customers_done, run.invoices_created, run.failures) == (
        customers,
        customers,
        customers,
        0,
    ), report
    assert _invoices(plant, tenant_id, period) == (customers, customers), report
    events = _events(plant, tenant_id, run_id)
    assert events.count("billing_run.completed") == 1, events
    assert events.count("billing_run.started") == 1, events
    with plant.db.transaction(tenant_id=tenant_id) as session:
        issued = session.scalar(select(func.count()).select_from(Event).where(Event.type == "invoice.issued"))
    assert issued == customers, report
    # The chunk the dead worker held was owed until it finished: sent again once its lease ran out.
    assert chunks.jobs == run.chunks_total, report
    assert chunks.finished == chunks.jobs, report
    assert chunks.resent >= 1, report
    assert chunks.dead_letters == 0, report


# (b) Redis flushed with activation jobs queued and in flight -----------------------------------------


def test_activation_jobs_lost_with_a_flushed_redis_are_sent_again_and_each_line_activates_once(plant: Plant) -> None:
    lines = 20
    plant.start_simulators()
    box = SecretBox.from_setting(plant.env["MVNE_SIM_KEY"])
    with plant.db.transaction(platform=True) as session:
        slug = f"faults-{secrets.token_hex(4)}"
        tenant_id = onboard_tenant(
            session, name=slug, slug=slug, country="FR", currency="EUR", timezone=ZONE, box=box, pool_size=lines + 5
        ).id
    offer_id = _offer(plant, tenant_id)
    customer_ids = _customers(plant, tenant_id, lines)
    # Each activation waits on the network a while, so jobs are still queued when Redis loses them.
    latency = httpx.post(f"http://127.0.0.1:{plant.network_port}/sim-admin/latency", json={"ms": 400}, timeout=10)
    assert latency.status_code < 300, latency.text
    plant.start_scheduler()
    plant.start_worker("worker", threads=2)

    with plant.db.transaction(tenant_id=tenant_id) as session:
        line_ids = [
            request_subscription(
                session, tenant_id=tenant_id, customer_id=customer_id, offer_id=offer_id, sim_type="esim"
            ).id
            for customer_id in customer_ids
        ]
    began = time.monotonic()

    def statuses() -> dict[str, int]:
        with plant.db.transaction(tenant_id=tenant_id) as session:
            rows = session.execute(
                select(Subscription.status, func.count())
                .where(Subscription.id.in_(line_ids))
                .group_by(Subscription.status)
            ).all()
            return {status: int(count) for status, count in rows}

    plant.poll(lambda: statuses().get("active", 0) >= 2, timeout=60, what="the first activations", every=0.02)
    at_flush = statuses()
    client = redis.Redis.from_url(plant.redis_url)
    client.flushdb()
    client.close()
    flushed_after = time.monotonic() - began
    assert at_flush.get("active", 0) < lines, f"the flush landed after every line was active: {at_flush}"

    flushed = time.monotonic()
    plant.poll(
        lambda: statuses() == {"active": lines}, timeout=90, what="every line to be active after the flush", every=0.2
    )
    recovered_in = time.monotonic() - flushed
    jobs = plant.poll(
        lambda: (
            (f := plant.figures(actor="provisioning.activate_subscription", tenant_id=tenant_id)).unfinished == 0 and f
        ),
        timeout=30,
        what="the activation jobs to be recorded finished",
    )
    report = "\n".join(
        [
            f"{lines} activations; Redis flushed after {flushed_after:.1f} s with {at_flush.get('active', 0)} "
            f"active; all active {recovered_in:.1f} s after the flush (lease {LEASE_S} s)",
            _figures("activation jobs", jobs),
        ]
    )
    print(f"\n{report}")

    with plant.db.transaction(tenant_id=tenant_id) as session:
        subs = session.scalars(select(Subscription).where(Subscription.id.in_(line_ids))).all()
        activated = session.scalars(
            select(Event.object_id).where(Event.type == "subscription.activated", Event.object_id.in_(line_ids))
        ).all()
        imsis = list(session.scalars(select(Sim.imsi).where(Sim.id.in_([s.sim_id for s in subs]))))
        # No activation ran twice at once: no number nor profile was taken and then dropped.
        numbers_taken = session.scalar(select(func.count()).select_from(PhoneNumber))
        profiles_taken = session.scalar(select(func.count()).select_from(Sim).where(Sim.status != "available"))

    def known_msisdns(imsis: list[str]) -> list[str]:
        found = []
        for imsi in imsis:
            found.append(
                httpx.get(f"http://127.0.0.1:{plant.network_port}/subscribers/{imsi}", timeout=10).json()["msisdn"]
            )
        return found

    assert sorted(activated) == sorted(line_ids), report  # one activation per line, none twice
    assert len({s.msisdn for s in subs}) == lines, report
    assert len({s.sim_id for s in subs}) == lines, report
    for imsi in imsis:  # the host network knows each line, with its number
        known = httpx.get(f"http://127.0.0.1:{plant.network_port}/subscribers/{imsi}", timeout=10)
        assert known.status_code == 200, known.text
    assert sorted(known_msisdns(imsis)) == sorted(s.msisdn for s in subs), report
    assert (numbers_taken, profiles_taken) == (lines, lines), report
    assert (jobs.jobs, jobs.finished, jobs.dead_letters) == (lines, lines, 0), report
    assert jobs.resent >= 1, report


# (c) A job that fails past its last retry ---------------------------------------------------------------


def test_a_billing_run_whose_job_fails_for_good_is_marked_failed_and_a_replay_completes_it(plant: Plant) -> None:
    customers = 5
    period, period_start = billing.last_ended_period(ZONE)
    tenant_id = _tenant(plant)
    offer_id = _offer(plant, tenant_id)
    _billable_lines(plant, tenant_id, offer_id, _customers(plant, tenant_id, customers), period_start)
    plant.start_scheduler()
    plant.start_worker("worker", threads=2)

    with plant.db.transaction(tenant_id=tenant_id) as session:
        run_id = billing.start_billing_run(session, tenant_id=tenant_id, period=period).id
        # The tenant's time zone breaks once the run was asked for: the run's job fails on every attempt.
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(timezone="Nowhere/Atlantis"))
    began = time.monotonic()
    failed = plant.poll(
        lambda: (r := _run(plant, tenant_id, run_id)).status == "failed" and r,
        timeout=60,
        what="the billing run to show it failed",
        every=0.2,
    )
    failed_after = time.monotonic() - began
    assert failed.failure_reason is not None
    assert "Nowhere/Atlantis" in failed.failure_reason, failed.failure_reason
    assert _events(plant, tenant_id, run_id) == ["billing_run.created", "billing_run.failed"]
    with plant.db.transaction(platform=True) as session:
        [letter] = session.scalars(
            select(DeadLetter).where(
                DeadLetter.tenant_id == tenant_id, DeadLetter.actor.in_(("charging.execute_billing_run", *CHUNK))
            )
        ).all()
        letter_id, attempts = letter.id, letter.attempts
    assert letter.actor == "charging.execute_billing_run"
    assert attempts == MAX_RETRIES + 1

    with plant.db.transaction(tenant_id=tenant_id) as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(timezone=ZONE))
        # A failed run does not hold its period: a new one may start (undone here: the failed one resumes).
        with session.begin_nested() as savepoint:
            assert billing.start_billing_run(session, tenant_id=tenant_id, period=period).id != run_id
            savepoint.rollback()
    with plant.db.transaction(platform=True) as session:  # what POST /v1/dead-letters/{id}/replay does
        replay_dead_letter(session, letter_id)
    replayed = time.monotonic()
    run = plant.poll(
        lambda: (r := _run(plant, tenant_id, run_id)).status not in ("pending", "running") and r,
        timeout=60,
        what="the replayed billing run to end",
        every=0.2,
    )
    completed_in = time.monotonic() - replayed
    run_jobs = plant.poll(
        lambda: (f := plant.figures(actor="charging.execute_billing_run", tenant_id=tenant_id)).unfinished == 0 and f,
        timeout=30,
        what="the run's jobs to be recorded finished",
    )
    chunks = plant.poll(
        lambda: (f := plant.figures(actor="charging.invoice_billing_chunk", tenant_id=tenant_id)).unfinished == 0 and f,
        timeout=30,
        what="the chunk jobs to be recorded finished",
    )
    report = "\n".join(
        [
            f"billing run failed for good after {failed_after:.1f} s ({attempts} attempts), "
            f"{run.status} {completed_in:.1f} s after its replay",
            _figures("run jobs (the failed one and its replay)", run_jobs),
            _figures("chunk jobs", chunks),
        ]
    )
    print(f"\n{report}")

    assert (run.status, run.failure_reason, run.invoices_created) == ("completed", None, customers), report
    assert _invoices(plant, tenant_id, period) == (customers, customers), report
    events = _events(plant, tenant_id, run_id)
    assert events == [
        "billing_run.created",
        "billing_run.failed",
        "billing_run.resumed",
        "billing_run.started",
        "billing_run.completed",
    ], events
    assert (run_jobs.jobs, run_jobs.finished, run_jobs.dead_letters) == (2, 2, 1), report
    assert (chunks.jobs, chunks.finished, chunks.dead_letters) == (1, 1, 0), report
