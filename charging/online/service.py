"""The runtime's online charging engine: its Redis (or the embedded mode's in-process one), built once."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from mvne.charging.online.credit import MICRO, OnlineCharging
from mvne.charging.online.store import ChargingStore, StoreNotDurable
from mvne.charging.usage import OFFLINE_USE
from mvne.infra.runtime import Runtime, current_runtime_or_none

log = logging.getLogger("mvne.charging.online")
_BUILD = threading.Lock()
PART = "online_charging"


def charging_client(url: str) -> redis.Redis:
    """A Redis client for `url`; memory:// is an in-process Redis (with Lua) that keeps nothing."""
    if url.startswith("memory://"):
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return redis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30, decode_responses=True
    )


def online_charging(rt: Runtime) -> OnlineCharging:
    """The runtime's engine, built on first use (a Redis that would not keep its state is refused here)."""
    found: OnlineCharging | None = rt.parts.get(PART)
    if found is not None:
        return found
    with _BUILD:
        found = rt.parts.get(PART)
        if found is None:
            settings = rt.settings
            store = ChargingStore(charging_client(settings.charging_url), namespace=f"{settings.broker_namespace}:chg:")
            if not settings.charging_url.startswith("memory://") and not settings.charging_volatile_ok:
                store.check_durable()
            found = OnlineCharging(
                rt.db, store, validity_s=settings.charging_validity_s, grace_s=settings.charging_grace_s
            )
            rt.parts[PART] = found
    return found


def money_added(rt: Runtime, line_id: str, amount: Decimal) -> None:
    """A top-up committed: the line's account, if one is held, has that much more (and the line is prepaid now).

    A failure here is logged and the account under-grants until it is read again: never the other way round.
    """
    engine = rt.parts.get(PART)
    if engine is None:
        return  # nothing charged through this process's engine yet: no account can hold the line here
    try:
        engine.store.top_up(line_id, int(amount * MICRO))
    except redis.RedisError:
        log.exception("top-up of line %s not passed to the charging store", line_id)


def cap_changed(rt: Runtime, *, line_id: str | None, customer_id: str | None, cap: tuple[Decimal, str] | None) -> None:
    """A spend cap set or removed (committed): the line's account or the customer's hash, if held, has it now."""
    engine = rt.parts.get(PART)
    if engine is None:
        return
    key = engine.store.account_key(line_id) if line_id else engine.store.customer_key(customer_id or "")
    try:
        engine.store.set_cap(key, None if cap is None else int(cap[0] * MICRO), cap[1] if cap else "")
    except redis.RedisError:
        log.exception("spend cap of %s not passed to the charging store", line_id or customer_id)


def _count_recorded_use(session: Session) -> None:
    """After a commit that rated records: the online accounts held for their lines count what the records used.

    A failure here is logged: the account then grants from what it knew until it is read again (at most the use
    of these records too much, on a line whose usage arrives both ways at once).
    """
    noted = session.info.pop(OFFLINE_USE, None)
    if not noted:
        return
    rt = current_runtime_or_none()
    if rt is None or (rt.settings.charging_url.startswith("memory://") and PART not in rt.parts):
        return  # an in-process store nobody charged through holds no account
    try:
        store = online_charging(rt).store
        for line_id, counters in noted:
            store.recorded(line_id, counters)
    except (redis.RedisError, StoreNotDurable):
        log.exception("use rated from records not passed to the charging store")


def _forget_recorded_use(session: Session, *_: object) -> None:
    session.info.pop(OFFLINE_USE, None)


event.listen(Session, "after_commit", _count_recorded_use)
event.listen(Session, "after_rollback", _forget_recorded_use)
event.listen(Session, "after_soft_rollback", _forget_recorded_use)
