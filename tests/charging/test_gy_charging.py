"""Diameter Gy against the real engine: a network's client (python-diameter over TCP), directly and through
freeDiameter as a relay, and what ends in the database."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mvne.charging.online.diameter import GyServer
from mvne.charging.online.gy_client import GyClient, UnitReport
from mvne.charging.online.ledger import drain
from mvne.charging.online.messages import RequestKind
from mvne.charging.online.service import online_charging
from mvne.infra.runtime import Runtime
from tests.charging.test_diameter_relay import (
    CLIENT_HOST,
    CLIENT_REALM,
    DRA_HOST,
    OCS_HOST,
    OCS_REALM,
    freediameter_relay,
)
from tests.charging.test_online_charging import MB, balance_of, prepaid, records_of
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on
from tests.conftest import free_port
from tests.support.api import TenantHandle

SUCCESS, CREDIT_LIMIT_REACHED, UNKNOWN_SESSION, USER_UNKNOWN = 2001, 4012, 5002, 5030
TERMINATE = 0


@pytest.fixture
def gy_server(runtime: Runtime) -> Iterator[GyServer]:
    engine = online_charging(runtime)
    server = GyServer(
        engine.handle,
        host="127.0.0.1",
        port=free_port(),
        origin_host=OCS_HOST,
        origin_realm=OCS_REALM,
        peers=[CLIENT_HOST, DRA_HOST],
    )
    server.start()
    yield server
    server.stop()


def client_of(port: int, peer: str) -> GyClient:
    client = GyClient(
        "127.0.0.1",
        port,
        origin_host=CLIENT_HOST,
        origin_realm=CLIENT_REALM,
        destination_realm=OCS_REALM,
        peer_host=peer,
    )
    client.start()
    return client


def run_session(client: GyClient, msisdn: str) -> list[Any]:
    """CCR-I asking for two rating groups, CCR-U reporting and asking again (sent twice), CCR-T."""
    session = client.new_session_id()
    digits = msisdn.lstrip("+")
    initial = client.credit_control(
        session, RequestKind.INITIAL, 0, subscriber=digits, units=[UnitReport(10, requested=8 * MB), UnitReport(20)]
    )
    update = client.credit_control(
        session, RequestKind.UPDATE, 1, units=[UnitReport(10, used=8 * MB, requested=8 * MB)]
    )
    again = client.credit_control(session, RequestKind.UPDATE, 1, units=[UnitReport(10, used=8 * MB, requested=8 * MB)])
    termination = client.credit_control(
        session, RequestKind.TERMINATION, 2, units=[UnitReport(10, used=MB, ask=False, final=True)]
    )
    late = client.credit_control(session, RequestKind.UPDATE, 3, units=[UnitReport(10, used=MB)])
    return [initial, update, again, termination, late]


def assert_charged(runtime: Runtime, tenant: TenantHandle, sub: dict[str, Any], answers: list[Any]) -> None:
    initial, update, again, termination, late = answers
    # 0.10 pays for 10 MB: group 10 takes 8 MB, group 20 the 2 MB left (its last), then nothing is left.
    assert (initial.result_code, initial.failure_handling) == (SUCCESS, TERMINATE)
    assert (initial.grant(10).result_code, initial.grant(10).granted) == (SUCCESS, 8 * MB)
    assert (initial.grant(20).result_code, initial.grant(20).granted) == (SUCCESS, 2 * MB)
    assert initial.grant(20).final_unit_action == TERMINATE
    assert initial.grant(10).final_unit_action is None
    assert update.grant(10).result_code == CREDIT_LIMIT_REACHED
    assert update.grant(10).granted is None
    assert (again.result_code, again.grant(10).result_code) == (update.result_code, update.grant(10).result_code)
    assert termination.result_code == SUCCESS
    assert late.result_code == UNKNOWN_SESSION
    drain(runtime.db, online_charging(runtime).store)
    # Group 10 used 9 MB (charged 0.09); group 20 used nothing of its 2 MB, which went back.
    assert [(r.quantity, r.rating_group, r.amount) for r in records_of(runtime, tenant, sub)] == [
        (9 * MB, 10, Decimal("0.09"))
    ]
    assert balance_of(runtime, tenant, sub) == Decimal("0.01")


def test_a_gateway_charges_a_session_over_gy_and_one_group_runs_out_of_credit(
    runtime: Runtime, tenant: TenantHandle, gy_server: GyServer
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "0.10")
    client = client_of(gy_server.port, OCS_HOST)
    try:
        answers = run_session(client, sub["msisdn"])
        stranger = client.credit_control(
            client.new_session_id(), RequestKind.INITIAL, 0, subscriber="99912345678", units=[UnitReport(1)]
        )
    finally:
        client.stop()

    assert_charged(runtime, tenant, sub, answers)
    assert stranger.result_code == USER_UNKNOWN


@pytest.fixture
def relay_port(tmp_path: Path, gy_server: GyServer) -> Iterator[int]:
    with freediameter_relay(tmp_path, gy_server) as (port, _):
        yield port


def test_the_same_session_through_freediameter_as_a_relay_is_charged_the_same(
    runtime: Runtime, tenant: TenantHandle, relay_port: int
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "0.10")
    client = client_of(relay_port, DRA_HOST)
    try:
        answers = run_session(client, sub["msisdn"])
    finally:
        client.stop()

    assert_charged(runtime, tenant, sub, answers)
