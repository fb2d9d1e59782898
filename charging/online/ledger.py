"""The ledger: settled online usage from the charging store's stream into PostgreSQL, as rated usage records.

Each settled rating group is a usage record (source `online`) rated by the same batch path as records from
the network: buckets consumed, overage priced, a prepaid line's balance debited, thresholds sent. Records
keep their ids, so an entry written twice (a ledger that stopped before acknowledging it, another that took
it over) counts once; an entry leaves the stream only after its batch committed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections import defaultdict
from typing import Any

from mvne.charging.online.store import ChargingStore
from mvne.charging.usage import ONLINE_SOURCE, UsageInput, UsageWindow, ingest_usage
from mvne.infra.db import Database
from mvne.tenants.models import Tenant

log = logging.getLogger("mvne.charging.online")

# An entry a ledger took and did not acknowledge within this long is taken over by another.
RECLAIM_AFTER_MS = 30_000


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _record(entry: dict[str, Any]) -> UsageInput:
    return UsageInput(
        record_id=entry["id"],
        service=entry["svc"],
        started_at=dt.datetime.fromisoformat(entry["at"]),
        quantity=int(entry["q"]),
        subscription_id=entry["l"],
        visited_plmn=entry.get("plmn"),
        called_number=entry.get("called"),
        rating_group=entry.get("rg"),
    )


def write_settled(
    db: Database,
    store: ChargingStore,
    *,
    batch: int = 2000,
    window: UsageWindow | None = None,
    reclaim_after_ms: int = RECLAIM_AFTER_MS,
) -> int:
    """Write one batch of settled usage (per tenant, one transaction each); how many entries it took."""
    entries = store.take_settled(consumer_name(), batch, reclaim_after_ms=reclaim_after_ms)
    by_tenant: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for entry_id, entry in entries:
        by_tenant[entry["t"]].append((entry_id, entry))
    for tenant_id, items in by_tenant.items():
        with db.transaction(tenant_id=tenant_id) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                log.warning(
                    "settled online usage of tenant %s, which is gone: %d entries dropped", tenant_id, len(items)
                )
            else:
                result = ingest_usage(
                    session, tenant, [_record(entry) for _, entry in items], source=ONLINE_SOURCE, window=window
                )
                if result.rejected:
                    log.warning("settled online usage rejected: %s", result.rejected[:5])
        store.acknowledge([(entry_id, entry["l"], entry.get("cus", "")) for entry_id, entry in items])
    return len(entries)


def drain(
    db: Database,
    store: ChargingStore,
    *,
    max_batches: int = 20,
    window: UsageWindow | None = None,
    reclaim_after_ms: int = RECLAIM_AFTER_MS,
) -> int:
    """Write settled usage until none is left (or `max_batches` were written); how many entries."""
    total = 0
    for _ in range(max_batches):
        taken = write_settled(db, store, window=window, reclaim_after_ms=reclaim_after_ms)
        total += taken
        if taken == 0:
            break
    return total
