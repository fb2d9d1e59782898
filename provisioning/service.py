"""Provisioning: onboarding a tenant's resources, and taking a line from order to active.

Activation talks to two outside systems (SM-DP+ and host network), so it runs as a job in steps,
each committed on its own: a retry resumes where the last attempt stopped, and every outside call
carries a key derived from the subscription so the far side sees a retry, not a second order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mvne.catalog.promotions import redeem
from mvne.catalog.service import sellable_offer, start_terms
from mvne.esim import service as esim
from mvne.esim.adapters import Es2PlusError, SmdpPlus, SmdpUnavailable
from mvne.esim.errors import SimPoolExhausted
from mvne.infra.crypto import SecretBox
from mvne.infra.db import Database, get_or_raise, utcnow
from mvne.infra.errors import DomainError, InvalidInput
from mvne.infra.ids import new_id
from mvne.infra.jobs import PermanentJobError, enqueue
from mvne.infra.storage import Storage
from mvne.provisioning import sandbox
from mvne.provisioning.adapters import HostNetwork, HostNetworkError, HostNetworkUnavailable
from mvne.provisioning.errors import (
    CountryNotSupported,
    NumberRangeExhausted,
    SandboxOnly,
    SubscriptionNotFound,
    UnsupportedSimType,
)
from mvne.provisioning.models import NumberBlock, PhoneNumber, Subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import create_tenant, get_customer, get_tenant, next_counter, record_event

log = logging.getLogger("mvne.provisioning")


@dataclass(frozen=True)
class NumberingPlan:
    """Where a country's mobile numbers for tenants come from: prefix, block digits, line digits."""

    prefix: str
    block_digits: int
    line_digits: int


# Mobile ranges that libphonenumber validates as MOBILE; each block holds 10^line_digits - 1 lines.
NUMBERING: dict[str, NumberingPlan] = {
    "FR": NumberingPlan("+3378", 3, 4),
    "DE": NumberingPlan("+49151", 4, 4),
    "ES": NumberingPlan("+346", 4, 4),
    "GB": NumberingPlan("+447400", 2, 4),
    "IT": NumberingPlan("+39320", 3, 4),
    "BE": NumberingPlan("+32470", 2, 4),
    "NL": NumberingPlan("+3161", 3, 4),
}
DEFAULT_POOL_SIZE = 100


def onboard_tenant(
    session: Session,
    *,
    name: str,
    slug: str,
    country: str,
    currency: str,
    timezone: str,
    box: SecretBox,
    pool_size: int = DEFAULT_POOL_SIZE,
    status: str = "active",
) -> Tenant:
    """Create a tenant with a number block and an eSIM profile pool (platform-scoped session).

    `status="onboarding"` makes a sandbox tenant (self-service sign-up), made live by its launch.
    """
    if country not in NUMBERING:
        raise CountryNotSupported(
            f"No mobile numbering plan for {country} yet; supported: {', '.join(sorted(NUMBERING))}.",
            errors={"country": [f"Supported: {', '.join(sorted(NUMBERING))}."]},
        )
    tenant = create_tenant(
        session, name=name, slug=slug, country=country, currency=currency, timezone=timezone, status=status
    )
    assign_number_block(session, tenant)
    batch = esim.create_profile_pool(session, tenant_id=tenant.id, size=pool_size, box=box)
    enqueue(session, "esim.load_profile_pool", tenant_id=tenant.id, batch_id=batch.id, key=f"load-{batch.id}")
    record_event(session, "tenant.created", tenant.id, {"slug": slug}, tenant_id=tenant.id)
    return tenant


def assign_number_block(session: Session, tenant: Tenant) -> NumberBlock:
    plan = NUMBERING[tenant.country]
    taken = session.scalar(select(func.max(NumberBlock.block)).where(NumberBlock.country == tenant.country))
    block = 0 if taken is None else taken + 1
    if block >= 10**plan.block_digits:
        raise NumberRangeExhausted(f"No free number block left for {tenant.country}.")
    number_block = NumberBlock(
        id=new_id("nbk"),
        tenant_id=tenant.id,
        country=tenant.country,
        block=block,
        prefix=f"{plan.prefix}{block:0{plan.block_digits}d}",
        size=10**plan.line_digits - 1,
    )
    session.add(number_block)
    session.flush()
    return number_block


def number_block_of(session: Session, tenant_id: str) -> NumberBlock | None:
    return session.scalar(select(NumberBlock).where(NumberBlock.tenant_id == tenant_id).order_by(NumberBlock.block))


def reserve_number(session: Session, tenant_id: str, subscription_id: str, *, test: bool = False) -> str:
    """The tenant's next unused MSISDN (E.164), recorded against the subscription.

    `test=True` draws from the block's sandbox test numbers instead (lines 9900 to 9999).
    """
    block = session.scalar(
        select(NumberBlock)
        .where(NumberBlock.tenant_id == tenant_id)
        .order_by(NumberBlock.block)
        .execution_options(all_tenants=True)
    )
    if block is None:
        raise NumberRangeExhausted("The tenant has no number block.")
    if test:
        # The block's test numbers, drawn in order; the simulated network refuses each of them.
        index = sandbox.FIRST_TEST_LINE - 1 + next_counter(session, tenant_id, f"msisdn-test:{block.id}")
        if index >= sandbox.FIRST_TEST_LINE + sandbox.TEST_LINES or index > block.size:
            raise NumberRangeExhausted(f"The test numbers of block {block.prefix} are all used.")
    else:
        index = next_counter(session, tenant_id, f"msisdn:{block.id}")
        # The last lines of each block are its test numbers, never given to an ordinary line.
        if index > min(block.size, sandbox.FIRST_TEST_LINE - 1):
            raise NumberRangeExhausted(f"Number block {block.prefix} is full.")
    line_digits = len(str(block.size))
    msisdn = f"{block.prefix}{index:0{line_digits}d}"
    parsed = phonenumbers.parse(msisdn)
    if not phonenumbers.is_valid_number(parsed):  # a misconfigured plan must not hand out bad numbers
        raise NumberRangeExhausted(f"Number {msisdn} is not a valid mobile number; check the numbering plan.")
    session.add(PhoneNumber(id=new_id("num"), msisdn=msisdn, status="assigned", subscription_id=subscription_id))
    return msisdn


def request_subscription(
    session: Session,
    *,
    tenant_id: str,
    customer_id: str,
    offer_id: str,
    sim_type: str,
    test_scenario: str | None = None,
    promotion_code: str | None = None,
) -> Subscription:
    """Take an order for a line; activation runs as a job and the line starts `pending`.

    The line is on the offer version on sale now (its first `subscription_terms`); a `promotion_code`
    discounts its recurring fee.

    `test_scenario` (sandbox tenants only) scripts the outcome on the simulators: see `mvne.provisioning.sandbox`.
    """
    if sim_type != "esim":
        raise UnsupportedSimType('Only sim_type "esim" is available.', errors={"sim_type": ["Must be esim."]})
    if test_scenario is not None:
        if test_scenario not in sandbox.SCENARIOS:
            raise InvalidInput(
                f"Unknown test scenario {test_scenario!r}.",
                errors={"test_scenario": [f"One of {', '.join(sandbox.SCENARIOS)}."]},
            )
        status = get_tenant(session, tenant_id).status
        if status != "onboarding":
            raise SandboxOnly(
                f"Test scenarios are for sandbox tenants; this tenant is {status} and its lines are real ones.",
                errors={"test_scenario": ["Leave it out: only a tenant in onboarding (its sandbox) may use it."]},
            )
    get_customer(session, customer_id)
    sellable_offer(session, offer_id)
    subscription = Subscription(
        id=new_id("sub"), customer_id=customer_id, offer_id=offer_id, sim_type=sim_type, test_scenario=test_scenario
    )
    session.add(subscription)
    session.flush()
    start_terms(session, subscription_id=subscription.id, offer_id=offer_id)
    if promotion_code is not None:
        redeem(session, code=promotion_code, offer_id=offer_id, subscription_id=subscription.id)
    enqueue(
        session,
        "provisioning.activate_subscription",
        tenant_id=tenant_id,
        subscription_id=subscription.id,
        key=f"activate-{subscription.id}",
    )
    record_event(session, "subscription.created", subscription.id, {"customer": customer_id, "offer": offer_id})
    return subscription


def get_subscription(session: Session, subscription_id: str) -> Subscription:
    return get_or_raise(session, Subscription, subscription_id, SubscriptionNotFound, "subscription")


def _activation_steps(
    db: Database,
    *,
    tenant_id: str,
    subscription_id: str,
    smdp: SmdpPlus,
    network: HostNetwork,
    storage: Storage,
    box: SecretBox,
) -> str:
    with db.transaction(tenant_id=tenant_id) as session:
        sub = get_subscription(session, subscription_id)
        if sub.status != "pending":
            return sub.status
        scenario = sub.test_scenario
        if sub.msisdn is None:
            test_number = scenario == sandbox.PROVISIONING_FAILS
            sub.msisdn = reserve_number(session, tenant_id, sub.id, test=test_number)
        if sub.sim_id is None:
            sub.sim_id = esim.reserve_sim(session).id
        sim = esim.get_sim(session, sub.sim_id)
        line = (sub.msisdn, sim.iccid, sim.imsi, sim.profile_type, sim.smdp_state, sub.network_provisioned_at)
        keys = esim.sim_keys(sim, box)
    msisdn, iccid, imsi, profile_type, smdp_state, provisioned_at = line
    device = sandbox.SCENARIO_EIDS.get(scenario or "")

    # Outside calls run between transactions: no lock is held while a far system answers.
    if smdp_state is None:
        esim.download_order(
            smdp, iccid=iccid, profile_type=profile_type, call_id=f"{subscription_id}-download", eid=device
        )
        with db.transaction(tenant_id=tenant_id) as session:
            sim = esim.get_sim(session, sim_id_of(session, subscription_id))
            sim.smdp_state = "allocated"
            sim.eid = device or sim.eid

    if provisioned_at is None:
        network.provision(imsi=imsi, msisdn=msisdn or "", iccid=iccid, ki=keys[0], opc=keys[1])
        with db.transaction(tenant_id=tenant_id) as session:
            get_subscription(session, subscription_id).network_provisioned_at = utcnow()

    released = esim.confirm_and_release(
        smdp, storage, tenant_id=tenant_id, iccid=iccid, call_id=f"{subscription_id}-confirm"
    )
    with db.transaction(tenant_id=tenant_id) as session:
        sub = get_subscription(session, subscription_id)
        if sub.status != "pending":
            return sub.status
        esim.mark_released(esim.get_sim(session, sub.sim_id or ""), released)
        sub.status = "active"
        sub.activated_at = utcnow()
        record_event(
            session,
            "subscription.activated",
            sub.id,
            {"msisdn": sub.msisdn, "iccid": iccid, "activation_code": str(released.code)},
        )
        return sub.status


def activate_subscription(
    db: Database,
    *,
    tenant_id: str,
    subscription_id: str,
    smdp: SmdpPlus,
    network: HostNetwork,
    storage: Storage,
    box: SecretBox,
) -> str:
    """Reserve a number and a profile, order the eSIM, provision the network, release the profile.

    Returns the final status. Transient failures raise (the job retries); permanent ones fail the line.
    """
    try:
        return _activation_steps(
            db,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            smdp=smdp,
            network=network,
            storage=storage,
            box=box,
        )
    except (SmdpUnavailable, HostNetworkUnavailable):
        raise
    except Es2PlusError as exc:
        if exc.retryable:
            raise
        _fail(db, tenant_id, subscription_id, f"smdp_{exc.subject_code}_{exc.reason_code}", str(exc))
    except HostNetworkError as exc:
        if exc.retryable:
            raise
        _fail(db, tenant_id, subscription_id, f"network_{exc.code}", str(exc))
    except (SimPoolExhausted, NumberRangeExhausted) as exc:
        _fail(db, tenant_id, subscription_id, exc.code, exc.detail)
    except DomainError as exc:
        raise PermanentJobError(exc.detail) from exc
    return "failed"


def sim_id_of(session: Session, subscription_id: str) -> str:
    """The id of the SIM a subscription holds."""
    sim_id = get_subscription(session, subscription_id).sim_id
    assert sim_id is not None
    return sim_id


def _fail(db: Database, tenant_id: str, subscription_id: str, code: str, reason: str) -> None:
    with db.transaction(tenant_id=tenant_id) as session:
        fail_activation(session, tenant_id=tenant_id, subscription_id=subscription_id, code=code, reason=reason)


# The failure code of a line whose activation job failed past its last retry (replaying the job reopens it).
ACTIVATION_JOB_FAILED = "activation_job_failed"


def fail_activation(session: Session, *, tenant_id: str, subscription_id: str, code: str, reason: str) -> bool:
    """Mark a pending line failed with a code and reason, and say so in an event; True when it was marked.

    Works in a tenant session and in a platform-scoped one (the job ledger's, when the activation job was
    dead-lettered).
    """
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.tenant_id != tenant_id or sub.status != "pending":
        return False
    sub.status = "failed"
    sub.failure_code = code[:64]
    sub.failure_reason = reason[:500]
    record_event(
        session,
        "subscription.failed",
        sub.id,
        {"code": sub.failure_code, "reason": sub.failure_reason},
        tenant_id=tenant_id,
    )
    log.warning("subscription activation failed", extra={"subscription_id": subscription_id, "code": code})
    return True
