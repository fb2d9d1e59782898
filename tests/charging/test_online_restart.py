"""Online charging across a Redis killed mid-session: a Redis of its own, writing every change before it answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from mvne.charging.online.credit import OnlineCharging
from mvne.charging.online.ledger import drain
from mvne.charging.online.messages import RequestKind, Result, UnitRequest
from mvne.charging.online.store import ChargingStore, StoreNotDurable
from mvne.infra.runtime import Runtime
from tests.charging.test_online_charging import MB, Session, balance_of, grant, prepaid, records_of
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on
from tests.conftest import free_port, skip_or_fail
from tests.support.api import TenantHandle


@dataclass
class RedisProcess:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            except redis.BusyLoadingError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        skip_or_fail("needs redis-server (Debian's redis-server package)")
    server = RedisProcess(free_port(), tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def test_a_redis_killed_mid_session_loses_no_unit_and_grants_none_twice(
    runtime: Runtime, tenant: TenantHandle, durable_redis: RedisProcess
) -> None:
    client = redis.Redis(port=durable_redis.port, socket_timeout=5)
    store = ChargingStore(client, namespace="restart:")
    store.check_durable()
    engine = OnlineCharging(runtime.db, store)
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")  # 100 MB
    session = Session(engine, sub)
    assert grant(session.open(UnitRequest(1, requested=40 * MB))).granted == 40 * MB
    update = session.update(UnitRequest(1, used=40 * MB, requested=40 * MB))

    durable_redis.kill()
    durable_redis.start()

    # The network did not get the answer and sends the update again: the same answer, nothing granted twice.
    session.sequence -= 1
    assert session.update(UnitRequest(1, used=40 * MB, requested=40 * MB)) == update
    other = Session(engine, sub)
    assert grant(other.open(UnitRequest(1, requested=50 * MB))).granted == 20 * MB  # 100 - 40 used - 40 held
    session.release(UnitRequest(1, used=25 * MB))
    other.release(UnitRequest(1, used=20 * MB))
    drain(runtime.db, store)

    assert sorted(r.quantity for r in records_of(runtime, tenant, sub)) == [20 * MB, 65 * MB]
    assert balance_of(runtime, tenant, sub) == Decimal("0.15")
    assert store.backlog() == 0


def test_settled_usage_written_before_a_kill_is_not_lost_and_counts_once(
    runtime: Runtime, tenant: TenantHandle, durable_redis: RedisProcess
) -> None:
    client = redis.Redis(port=durable_redis.port, socket_timeout=5)
    store = ChargingStore(client, namespace="restart:")
    engine = OnlineCharging(runtime.db, store)
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "1.00")
    session = Session(engine, sub)
    session.open(UnitRequest(1, requested=30 * MB))
    assert session.release(UnitRequest(1, used=30 * MB)).result == Result.SUCCESS
    # The ledger takes the entry, writes it, and dies before it acknowledges it.
    taken = store.take_settled("dying-ledger", 10, reclaim_after_ms=0)
    assert len(taken) == 1

    durable_redis.kill()
    durable_redis.start()
    assert store.backlog() == 1
    drain(runtime.db, store)  # too soon to take over the dead ledger's entry
    assert records_of(runtime, tenant, sub) == []
    # Later (no wait here: taken over at once), another ledger writes it; a second pass finds nothing more.
    drain(runtime.db, store, reclaim_after_ms=0)
    drain(runtime.db, store, reclaim_after_ms=0)

    assert [r.quantity for r in records_of(runtime, tenant, sub)] == [30 * MB]
    assert balance_of(runtime, tenant, sub) == Decimal("0.70")
    assert session.send(RequestKind.UPDATE, UnitRequest(1, used=MB)).result == Result.UNKNOWN_SESSION


def test_a_redis_that_does_not_write_every_change_before_answering_is_refused(durable_redis: RedisProcess) -> None:
    client = redis.Redis(port=durable_redis.port)
    store = ChargingStore(client, namespace="durability:")
    store.check_durable()  # appendonly yes, appendfsync always

    client.config_set("appendfsync", "everysec")
    with pytest.raises(StoreNotDurable, match="appendfsync everysec"):
        store.check_durable()
    client.config_set("appendfsync", "always")
    client.config_set("appendonly", "no")
    with pytest.raises(StoreNotDurable, match="appendonly no"):
        store.check_durable()
