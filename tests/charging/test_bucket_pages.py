"""Rating's writes of a bucket's use are heap-only updates (PostgreSQL).

Rating writes `used` back to the same buckets after every chunk, all month long. None of the columns it
writes is indexed, so PostgreSQL can keep the new row version on the same page and leave the indexes alone,
if the page has room: `balance_buckets` is stored with 30 % of each page free. These tests fill pages with
buckets, write their use back the way rating does, and read the transaction's own statistics.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from sqlalchemy import text

from mvne.charging import engine
from mvne.charging.models import BUCKET_FILLFACTOR
from mvne.charging.usage import _insert_buckets, write_buckets
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from tests.support.api import TenantHandle, active_subscription, customer, published_offer

BUCKETS = 600  # several pages' worth: most rows sit on pages that were full when written


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    offer = published_offer(tenant.api, code=f"HOT-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def test_the_bucket_table_keeps_room_on_its_pages(postgres_settings: Settings, runtime: Runtime) -> None:
    with runtime.db.transaction(platform=True) as session:
        options = session.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'balance_buckets'"))
    assert f"fillfactor={BUCKET_FILLFACTOR}" in (options or []), options
    assert BUCKET_FILLFACTOR < 100


def test_writing_back_a_buckets_use_touches_no_index(
    postgres_settings: Settings, runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    values = [
        {
            "tenant_id": tenant.id,
            "subscription_id": line["id"],
            "service": "data",
            "zone": "home",
            "origin": "topup",
            "origin_key": f"hot:{n}",
            "granted": 10**9,
            "used": 0,
            "eu_used": 0,
            "priority": 100,
            "notified_percent": 0,
            "roam_like_at_home": False,
            "valid_from": start,
            "valid_to": start + dt.timedelta(days=30),
            "created_at": start,
        }
        for n in range(BUCKETS)
    ]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        _insert_buckets(session, values)
    buckets = [
        engine.Bucket(v["id"], line["id"], "data", "home", "topup", 10**9, 0, start, v["valid_to"]) for v in values
    ]

    stats = text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'balance_buckets'")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        # The counts read within the transaction may hold earlier ones not yet reported: this write's are the
        # difference.
        updated_before, hot_before = session.execute(stats).one()
        for bucket in buckets:
            bucket.used = 1_000
        write_buckets(session, buckets)
        updated, hot = (
            after - before
            for after, before in zip(session.execute(stats).one(), (updated_before, hot_before), strict=True)
        )

    assert updated == BUCKETS
    # On pages written full (the default) nearly every new version goes to another page, with a new entry in
    # each index. Here each page had room for more than a third of its rows' new versions, in one transaction
    # that cannot yet reclaim the old ones.
    assert hot >= BUCKETS // 3, (updated, hot)
