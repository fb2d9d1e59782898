"""SIM inventory: profile pools for tenants, reservation, and ordering an eSIM from the SM-DP+."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mvne.esim.adapters import DownloadProgress, SmdpPlus
from mvne.esim.errors import NotificationRefused, SimNotFound, SimPoolExhausted
from mvne.esim.identifiers import ActivationCode, make_iccid, make_imsi, normalize_iccid
from mvne.esim.models import Sim, SimBatch
from mvne.esim.qr import activation_qr_svg
from mvne.infra.crypto import SecretBox
from mvne.infra.db import get_or_raise
from mvne.infra.errors import InvalidInput
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue
from mvne.infra.storage import Storage
from mvne.tenants.models import Tenant
from mvne.tenants.service import get_tenant, record_event

# Test-network identities: ICCIDs under 89 882 (international, test issuer), IMSIs under MCC 001/MNC 01.
ICCID_PREFIX = "8988201"
TEST_MCC, TEST_MNC = "001", "01"
DEFAULT_PROFILE_TYPE = "mvne-standard"
# One request adds at most this many profiles (a batch is written in one transaction).
MAX_POOL_GROWTH = 10_000
# A sandbox pool with fewer available profiles than this is topped up by SANDBOX_TOP_UP more.
SANDBOX_LOW_WATER = 20
SANDBOX_TOP_UP = 100
# Serials are allocated across tenants: PostgreSQL writers take this lock so two never collide.
_SERIAL_LOCK = 0x73696D73  # "sims"


@dataclass(frozen=True)
class PoolSummary:
    available: int
    reserved: int
    in_use: int


def create_profile_pool(
    session: Session, *, tenant_id: str, size: int, box: SecretBox, profile_type: str = DEFAULT_PROFILE_TYPE
) -> SimBatch:
    """Give a tenant `size` new eSIM profiles with fresh serials and encrypted keys.

    `session` must be platform-scoped: serials are allocated across all tenants.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SERIAL_LOCK})
    next_serial = session.scalar(select(func.coalesce(func.max(SimBatch.first_serial + SimBatch.size), 1)))
    batch = SimBatch(
        id=new_id("sbt"), tenant_id=tenant_id, profile_type=profile_type, first_serial=int(next_serial or 1), size=size
    )
    session.add(batch)
    for serial in range(batch.first_serial, batch.first_serial + size):
        iccid = make_iccid(ICCID_PREFIX, serial)
        session.add(
            Sim(
                id=new_id("sim"),
                tenant_id=tenant_id,
                batch_id=batch.id,
                kind="esim",
                iccid=iccid,
                imsi=make_imsi(TEST_MCC, TEST_MNC, serial),
                profile_type=profile_type,
                ki_encrypted=box.encrypt(secrets.token_bytes(16), iccid.encode()),
                opc_encrypted=box.encrypt(secrets.token_bytes(16), iccid.encode()),
            )
        )
    session.flush()
    return batch


def pool_summary(session: Session, tenant_id: str) -> PoolSummary:
    """How many of the tenant's profiles are available, reserved and in use."""
    counts: dict[str, int] = dict(
        session.execute(select(Sim.status, func.count()).where(Sim.tenant_id == tenant_id).group_by(Sim.status)).all()
    )
    return PoolSummary(counts.get("available", 0), counts.get("reserved", 0), counts.get("in_use", 0))


def grow_profile_pool(
    session: Session, *, tenant_id: str, count: int, box: SecretBox, reason: str = "operator"
) -> SimBatch:
    """Add `count` profiles to a tenant's pool (platform-scoped session); the SM-DP+ gets them by a job.

    A sandbox SM-DP+ (our simulator) is loaded by the `esim.load_profile_pool` job; a real one gets
    its profiles from the SIM vendor. Records `esim_pool.replenished` in the tenant's event log.
    """
    if not 1 <= count <= MAX_POOL_GROWTH:
        raise InvalidInput(
            f"count must be from 1 to {MAX_POOL_GROWTH}.", errors={"count": [f"From 1 to {MAX_POOL_GROWTH}."]}
        )
    tenant = get_tenant(session, tenant_id)
    batch = create_profile_pool(session, tenant_id=tenant.id, size=count, box=box)
    enqueue(session, "esim.load_profile_pool", tenant_id=tenant.id, batch_id=batch.id, key=f"load-{batch.id}")
    summary = pool_summary(session, tenant.id)
    record_event(
        session,
        "esim_pool.replenished",
        batch.id,
        {
            "batch": batch.id,
            "added": count,
            "reason": reason,
            "first_iccid": make_iccid(ICCID_PREFIX, batch.first_serial),
            "available": summary.available,
        },
        tenant_id=tenant.id,
    )
    return batch


def replenish_pool(
    session: Session,
    *,
    tenant_id: str,
    box: SecretBox,
    low_water: int = SANDBOX_LOW_WATER,
    top_up: int = SANDBOX_TOP_UP,
) -> SimBatch | None:
    """Top up a pool that fell below `low_water` available profiles (platform-scoped); None if not needed.

    The tenant's row is locked first, so two top-ups racing for one tenant add one batch, not two.
    """
    session.scalar(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    if pool_summary(session, tenant_id).available >= low_water:
        return None
    return grow_profile_pool(session, tenant_id=tenant_id, count=top_up, box=box, reason="sandbox_top_up")


def tenants_below(session: Session, low_water: int = SANDBOX_LOW_WATER) -> list[str]:
    """Tenants holding a pool with fewer than `low_water` available eSIM profiles (platform-scoped session)."""
    available = func.count(Sim.id).filter(Sim.status == "available")
    rows = session.execute(
        select(Tenant.id)
        .outerjoin(Sim, Sim.tenant_id == Tenant.id)
        .where(Tenant.status == "active", Tenant.id.in_(select(SimBatch.tenant_id)))
        .group_by(Tenant.id)
        .having(available < low_water)
    )
    return list(rows.scalars())


def reserve_sim(session: Session, *, kind: str = "esim", low_water: int = SANDBOX_LOW_WATER) -> Sim:
    """Take an available profile out of the tenant's pool (skipping rows other workers hold).

    When fewer than `low_water` stay available, an `esim.replenish_pool` job is asked for (once per
    batch the tenant holds); it tops up sandbox pools and warns about live ones.
    """
    sim = session.scalar(
        select(Sim)
        .where(Sim.status == "available", Sim.kind == kind)
        .order_by(Sim.iccid)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if sim is None:
        raise SimPoolExhausted("The tenant has no available eSIM profile left.")
    sim.status = "reserved"
    left = session.scalar(select(func.count(Sim.id)).where(Sim.status == "available", Sim.kind == kind)) or 0
    if left < low_water:
        batches = session.scalar(select(func.count(SimBatch.id)).where(SimBatch.tenant_id == sim.tenant_id)) or 0
        enqueue(session, "esim.replenish_pool", tenant_id=sim.tenant_id, key=f"replenish-{sim.tenant_id}-{batches}")
    return sim


def get_sim(session: Session, sim_id: str) -> Sim:
    return get_or_raise(session, Sim, sim_id, SimNotFound, "SIM")


def sim_keys(sim: Sim, box: SecretBox) -> tuple[str, str]:
    """Ki and OPc in hex, for the one component that provisions them on the network."""
    aad = sim.iccid.encode()
    return box.decrypt(sim.ki_encrypted, aad).hex(), box.decrypt(sim.opc_encrypted, aad).hex()


@dataclass(frozen=True)
class ReleasedProfile:
    code: ActivationCode
    qr_key: str


def download_order(smdp: SmdpPlus, *, iccid: str, profile_type: str, call_id: str, eid: str | None = None) -> None:
    """ES2+ DownloadOrder: the SM-DP+ reserves this profile for us, for the device `eid` when given.

    Call it outside any transaction.
    """
    smdp.download_order(iccid=iccid, profile_type=profile_type, call_id=call_id, eid=eid)


def confirm_and_release(
    smdp: SmdpPlus, storage: Storage, *, tenant_id: str, iccid: str, call_id: str
) -> ReleasedProfile:
    """ES2+ ConfirmOrder with release: the profile becomes downloadable; its QR code is stored."""
    result = smdp.confirm_order(iccid=iccid, release_flag=True, call_id=call_id)
    code = ActivationCode(smdp_address=result.smdp_address or "", matching_id=result.matching_id)
    key = f"tenants/{tenant_id}/esim/{iccid}.svg"
    storage.put(key, activation_qr_svg(str(code)), "image/svg+xml")
    return ReleasedProfile(code, key)


def mark_released(sim: Sim, released: ReleasedProfile) -> None:
    sim.matching_id = released.code.matching_id
    sim.activation_code = str(released.code)
    sim.qr_key = released.qr_key
    sim.smdp_state = "released"
    sim.status = "in_use"


# What each notification point tells about the profile (SGP.22 5.3.5); other points change nothing.
_POINT_STATES = {3: ("downloaded", "esim.downloaded"), 4: ("installed", "esim.installed")}


def record_download_progress(session: Session, progress: DownloadProgress) -> Sim:
    """Apply an SM-DP+ download notification to our SIM (platform-scoped session).

    Only a profile we ordered from the SM-DP+ takes notifications, and only ones that agree with it
    (profile type, EID once bound); anything else raises NotificationRefused with its SGP.22 code.
    A failure at any point marks the profile `error`; a late, older notification never moves a profile back.
    """
    sim = session.scalar(select(Sim).where(Sim.iccid == normalize_iccid(progress.iccid)))
    if sim is None:
        raise NotificationRefused("8.2.1", "3.9", f"ICCID {progress.iccid} is unknown")
    if sim.kind != "esim" or sim.smdp_state is None:
        raise NotificationRefused("8.2.1", "1.2", f"profile {progress.iccid} was never ordered from the SM-DP+")
    if progress.profile_type != sim.profile_type:
        raise NotificationRefused(
            "8.2.5", "3.8", f"profileType {progress.profile_type!r} does not match the profile {progress.iccid}"
        )
    if progress.eid and sim.eid and progress.eid != sim.eid:
        raise NotificationRefused("8.1.1", "3.10", "a different EID is associated with the profile")
    if progress.eid and not sim.eid:
        sim.eid = progress.eid
    if not progress.succeeded:
        sim.smdp_state = "error"
        event, data = (
            "esim.download_failed",
            {
                "point": progress.point_name,
                "subject_code": progress.subject_code,
                "reason_code": progress.reason_code,
            },
        )
    elif progress.notification_point_id in _POINT_STATES:
        state, event = _POINT_STATES[progress.notification_point_id]
        order = ("released", "downloaded", "installed")
        if sim.smdp_state in order and order.index(state) > order.index(sim.smdp_state):
            sim.smdp_state = state
        data = {"point": progress.point_name}
    else:
        return sim
    record_event(session, event, sim.id, {"iccid": sim.iccid, "eid": sim.eid, **data}, tenant_id=sim.tenant_id)
    return sim
