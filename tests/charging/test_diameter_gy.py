"""The Diameter Gy front over real TCP: capabilities exchange, watchdogs, the CCR to `ChargingRequest` mapping and
back, refusals, hostile bytes, concurrency.

The engine here is a stand-in written for these tests (the real one is tested on its own): it records what it
is asked and answers by rule, so each test can check what crossed the wire in both directions.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import UsedServiceUnit
from diameter.message.commands import CapabilitiesExchangeRequest, DeviceWatchdogRequest, DisconnectPeerRequest

from mvne.charging.online.diameter import GyServer
from mvne.charging.online.gy_client import GyClient, UnitReport
from mvne.charging.online.messages import (
    ChargingAnswer,
    ChargingRequest,
    FinalUnit,
    RequestKind,
    Result,
    Service,
    SubscriberKind,
    UnitGrant,
    UnitRequest,
)
from tests.conftest import free_port

OCS_HOST = "ocs.test.example"
OCS_REALM = "ocs.example"
CLIENT_HOST = "pgw.test.example"
LATE_CLIENT_HOST = "pgw2.test.example"
PASSING_CLIENT_HOST = "pgw3.test.example"
RAW_HOST = "raw.test.example"
NETWORK_REALM = "net.example"

SUBSCRIBER = "33612345678"
FAILING_SUBSCRIBER = "33600000500"
CONCURRENT_SUBSCRIBER = "33600000004"
CONCURRENT_REQUESTS = 4
EXHAUSTED_GROUP = 20
LAST_GROUP = 30
DEFAULT_GRANT = {Service.DATA: 1_000_000, Service.VOICE: 300, Service.SMS: 1}
VALIDITY = 600

CC_REQUEST_NUMBER, SUBSCRIPTION_ID, SESSION_ID, SERVICE_CONTEXT_ID = 415, 443, 263, 461


class RecordingEngine:
    """Grants what is asked (or a default), refuses one rating group, fails for one subscriber; records all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[ChargingRequest] = []
        self.barrier = threading.Barrier(CONCURRENT_REQUESTS, timeout=5)

    def __call__(self, request: ChargingRequest) -> ChargingAnswer:
        with self._lock:
            self.requests.append(request)
        if request.subscriber == FAILING_SUBSCRIBER:
            raise RuntimeError("the engine is down")
        if request.subscriber == CONCURRENT_SUBSCRIBER:
            self.barrier.wait()
        return ChargingAnswer(
            session_id=request.session_id,
            sequence=request.sequence,
            result=Result.SUCCESS,
            grants=tuple(self._grant(unit, request.service) for unit in request.units),
            failure_handling="continue",
        )

    def _grant(self, unit: UnitRequest, service: Service) -> UnitGrant:
        if unit.rating_group == EXHAUSTED_GROUP:
            return UnitGrant(unit.rating_group, Result.CREDIT_LIMIT_REACHED)
        if unit.final:
            return UnitGrant(unit.rating_group, Result.SUCCESS)
        return UnitGrant(
            unit.rating_group,
            Result.SUCCESS,
            granted=unit.requested or DEFAULT_GRANT[service],
            validity_time=VALIDITY,
            final_unit=FinalUnit() if unit.rating_group == LAST_GROUP else None,
        )

    def received(self, session_id: str) -> list[ChargingRequest]:
        with self._lock:
            return [r for r in self.requests if r.session_id == session_id]


class RawPeer:
    """A bare TCP peer speaking Diameter by hand, to send what a well-behaved client would not."""

    def __init__(self, port: int, origin_host: str = RAW_HOST) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.origin_host = origin_host
        self._ids = itertools.count(1)

    def send(self, message: Any) -> None:
        message.header.hop_by_hop_identifier = next(self._ids)
        message.header.end_to_end_identifier = next(self._ids)
        self.sock.sendall(message.as_bytes())

    def receive(self) -> Any:
        header = self._read(20)
        return Message.from_bytes(header + self._read(int.from_bytes(header[1:4], "big") - 20))

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def exchange_capabilities(self) -> Any:
        cer = CapabilitiesExchangeRequest()
        cer.origin_host = self.origin_host.encode()
        cer.origin_realm = NETWORK_REALM.encode()
        cer.host_ip_address = ["127.0.0.1"]
        cer.vendor_id = 0
        cer.product_name = "raw-peer"
        cer.origin_state_id = 1
        cer.auth_application_id = [4]
        self.send(cer)
        return self.receive()

    def watchdog(self) -> Any:
        dwr = DeviceWatchdogRequest()
        dwr.origin_host = self.origin_host.encode()
        dwr.origin_realm = NETWORK_REALM.encode()
        dwr.origin_state_id = 1
        self.send(dwr)
        return self.receive()

    def disconnect(self) -> Any:
        dpr = DisconnectPeerRequest()
        dpr.origin_host = self.origin_host.encode()
        dpr.origin_realm = NETWORK_REALM.encode()
        dpr.disconnect_cause = 0  # REBOOTING
        self.send(dpr)
        return self.receive()

    def closed_by_server(self, within: float) -> bool:
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def new_client(port: int, origin_host: str = CLIENT_HOST) -> GyClient:
    return GyClient(
        "127.0.0.1",
        port,
        origin_host=origin_host,
        origin_realm=NETWORK_REALM,
        destination_realm=OCS_REALM,
        peer_host=OCS_HOST,
    )


@pytest.fixture(scope="module")
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture(scope="module")
def server(engine: RecordingEngine) -> Iterator[GyServer]:
    gy = GyServer(
        engine,
        host="127.0.0.1",
        port=free_port(),
        origin_host=OCS_HOST,
        origin_realm=OCS_REALM,
        peers=[CLIENT_HOST, LATE_CLIENT_HOST, PASSING_CLIENT_HOST, RAW_HOST],
    )
    gy.start()
    yield gy
    gy.stop()


@pytest.fixture(scope="module")
def client(server: GyServer) -> Iterator[GyClient]:
    gy = new_client(server.port)
    gy.start()
    yield gy
    gy.stop()


def test_the_capabilities_exchange_advertises_credit_control(server: GyServer) -> None:
    peer = RawPeer(server.port)
    try:
        cea = peer.exchange_capabilities()
    finally:
        peer.close()

    assert cea.result_code == 2001
    assert cea.origin_host == OCS_HOST.encode()
    assert cea.origin_realm == OCS_REALM.encode()
    assert cea.auth_application_id == [4]


def test_a_client_sees_the_server_and_its_credit_control_after_the_exchange(client: GyClient) -> None:
    assert client.peer_identity == OCS_HOST
    assert client.peer_applications == [4]


def test_a_peer_that_is_not_configured_is_refused(server: GyServer) -> None:
    peer = RawPeer(server.port, origin_host="stranger.test.example")
    try:
        cea = peer.exchange_capabilities()
    finally:
        peer.close()

    assert cea.result_code == 3010  # DIAMETER_UNKNOWN_PEER


def test_a_device_watchdog_is_answered(server: GyServer, client: GyClient) -> None:
    peer = RawPeer(server.port)
    try:
        peer.exchange_capabilities()
        dwa = peer.watchdog()
    finally:
        peer.close()

    assert dwa.result_code == 2001
    assert dwa.origin_host == OCS_HOST.encode()
    assert client.watchdog()


def test_a_data_session_reaches_the_engine_as_initial_update_and_termination(
    client: GyClient, engine: RecordingEngine
) -> None:
    session = client.new_session_id()
    sent_at = dt.datetime(2025, 3, 4, 10, 30, 15, tzinfo=dt.UTC)

    client.credit_control(
        session,
        RequestKind.INITIAL,
        0,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10), UnitReport(LAST_GROUP, requested=5000)],
        event_timestamp=sent_at,
        visited_plmn="20801",
    )
    client.credit_control(
        session,
        RequestKind.UPDATE,
        1,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10, used=700_000), UnitReport(LAST_GROUP, used=5000, ask=False, final=True)],
    )
    client.credit_control(
        session,
        RequestKind.TERMINATION,
        2,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10, used=1234, ask=False, final=True)],
    )

    initial, update, termination = engine.received(session)
    assert initial == ChargingRequest(
        session_id=session,
        kind=RequestKind.INITIAL,
        sequence=0,
        service=Service.DATA,
        subscriber=SUBSCRIBER,
        subscriber_kind=SubscriberKind.MSISDN,
        units=(UnitRequest(10, requested=None), UnitRequest(LAST_GROUP, requested=5000)),
        visited_plmn="20801",
        at=sent_at,
    )
    assert (update.kind, update.sequence) == (RequestKind.UPDATE, 1)
    assert update.units == (
        UnitRequest(10, requested=None, used=700_000),
        UnitRequest(LAST_GROUP, requested=0, used=5000, final=True),
    )
    assert (termination.kind, termination.sequence) == (RequestKind.TERMINATION, 2)
    assert termination.units == (UnitRequest(10, requested=0, used=1234, final=True),)


def test_each_rating_group_is_answered_with_its_grant_validity_and_final_unit(client: GyClient) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session,
        RequestKind.INITIAL,
        0,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10), UnitReport(LAST_GROUP, requested=5000)],
    )

    assert (cca.session_id, cca.result_code, cca.origin_host) == (session, 2001, OCS_HOST)
    assert (cca.request_type, cca.request_number) == (1, 0)
    assert cca.failure_handling == 1  # CONTINUE, as the engine answered
    ordinary, last = cca.grant(10), cca.grant(LAST_GROUP)
    assert (ordinary.result_code, ordinary.granted, ordinary.validity_time) == (2001, 1_000_000, VALIDITY)
    assert ordinary.final_unit_action is None
    assert (last.result_code, last.granted, last.validity_time) == (2001, 5000, VALIDITY)
    assert last.final_unit_action == 0  # TERMINATE


def test_a_rating_group_out_of_credit_gets_4012_while_the_other_keeps_its_grant(client: GyClient) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session, RequestKind.INITIAL, 0, subscriber=SUBSCRIBER, units=[UnitReport(10), UnitReport(EXHAUSTED_GROUP)]
    )

    assert cca.result_code == 2001
    assert (cca.grant(10).result_code, cca.grant(10).granted) == (2001, 1_000_000)
    assert (cca.grant(EXHAUSTED_GROUP).result_code, cca.grant(EXHAUSTED_GROUP).granted) == (4012, None)


def test_a_voice_call_counts_seconds_and_reads_the_called_number(client: GyClient, engine: RecordingEngine) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session,
        RequestKind.INITIAL,
        0,
        service=Service.VOICE,
        subscriber="208010123456789",
        subscriber_type=1,
        units=[UnitReport(100, requested=120)],
        called_party="sip:+44-20-7946-0018@ims.mnc001.mcc208.3gppnetwork.org;user=phone",
    )

    (request,) = engine.received(session)
    assert (request.service, request.subscriber, request.subscriber_kind) == (
        Service.VOICE,
        "208010123456789",
        SubscriberKind.IMSI,
    )
    assert request.called_number == "442079460018"
    assert request.units == (UnitRequest(100, requested=120),)
    assert cca.grant(100).granted == 120


def test_a_text_message_is_an_event_counted_in_messages(client: GyClient, engine: RecordingEngine) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session,
        RequestKind.EVENT,
        0,
        service=Service.SMS,
        subscriber=SUBSCRIBER,
        units=[UnitReport(5, requested=1)],
        called_party="tel:+33698765432",
    )

    (request,) = engine.received(session)
    assert (request.kind, request.service, request.called_number) == (RequestKind.EVENT, Service.SMS, "33698765432")
    assert (cca.request_type, cca.grant(5).granted) == (4, 1)


def test_a_service_context_with_a_release_prefix_is_recognised(client: GyClient, engine: RecordingEngine) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session,
        RequestKind.INITIAL,
        0,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10)],
        service_context_id="001.208.17.32251@3gpp.org",
    )

    assert cca.result_code == 2001
    assert engine.received(session)[0].service is Service.DATA


def test_several_used_units_are_summed_with_input_and_output_octets_when_the_total_is_absent(
    client: GyClient, engine: RecordingEngine
) -> None:
    session = client.new_session_id()
    ccr = client.build_ccr(session, RequestKind.UPDATE, 1, subscriber=SUBSCRIBER, units=[UnitReport(10, used=1000)])
    ccr.multiple_services_credit_control[0].used_service_unit.append(
        UsedServiceUnit(cc_input_octets=300, cc_output_octets=200)
    )

    client.send(ccr)

    (request,) = engine.received(session)
    assert request.units[0].used == 1500


def test_a_request_without_subscription_id_gets_5005_and_never_reaches_the_engine(
    client: GyClient, engine: RecordingEngine
) -> None:
    session = client.new_session_id()

    cca = client.credit_control(session, RequestKind.INITIAL, 0, subscriber=None, units=[UnitReport(10)])

    assert cca.result_code == 5005
    assert cca.failed_avps == (SUBSCRIPTION_ID,)
    assert (cca.session_id, cca.request_number) == (session, 0)
    assert engine.received(session) == []


@pytest.mark.parametrize(
    ("attribute", "avp_code"),
    [("session_id", SESSION_ID), ("service_context_id", SERVICE_CONTEXT_ID), ("cc_request_number", CC_REQUEST_NUMBER)],
)
def test_a_request_without_a_mandatory_avp_gets_5005_naming_it_and_never_reaches_the_engine(
    client: GyClient, engine: RecordingEngine, attribute: str, avp_code: int
) -> None:
    ccr = client.build_ccr(
        client.new_session_id(), RequestKind.INITIAL, 0, subscriber=SUBSCRIBER, units=[UnitReport(10)]
    )
    setattr(ccr, attribute, None)
    asked_before = len(engine.requests)

    cca = client.send(ccr)

    assert cca.result_code == 5005
    assert avp_code in cca.failed_avps
    assert len(engine.requests) == asked_before


def test_an_unknown_service_context_is_refused_as_rating_failed_naming_the_avp(
    client: GyClient, engine: RecordingEngine
) -> None:
    session = client.new_session_id()

    cca = client.credit_control(
        session,
        RequestKind.INITIAL,
        0,
        subscriber=SUBSCRIBER,
        units=[UnitReport(10)],
        service_context_id="32270@3gpp.org",  # MMS: not a service of ours
    )

    assert cca.result_code == 5031
    assert cca.failed_avps == (SERVICE_CONTEXT_ID,)
    assert engine.received(session) == []


def test_an_engine_failure_is_answered_5012_and_logged(client: GyClient, caplog: pytest.LogCaptureFixture) -> None:
    session = client.new_session_id()

    with caplog.at_level(logging.ERROR, logger="mvne.diameter"):
        cca = client.credit_control(
            session, RequestKind.INITIAL, 0, subscriber=FAILING_SUBSCRIBER, units=[UnitReport(10)]
        )

    assert (cca.result_code, cca.session_id, cca.request_number) == (5012, session, 0)
    assert cca.grants == ()
    errors = [r.exc_info[1] for r in caplog.records if r.name == "mvne.diameter" and r.exc_info]
    assert [str(e) for e in errors] == ["the engine is down"]


def test_requests_are_handled_concurrently_by_the_engine(client: GyClient) -> None:
    # The engine lets these requests through only when all of them are inside it at once.
    def ask(_: int) -> int | None:
        session = client.new_session_id()
        cca = client.credit_control(
            session, RequestKind.INITIAL, 0, subscriber=CONCURRENT_SUBSCRIBER, units=[UnitReport(10)]
        )
        return cca.result_code

    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
        results = list(pool.map(ask, range(CONCURRENT_REQUESTS)))

    assert results == [2001] * CONCURRENT_REQUESTS


def test_many_threads_sharing_a_client_each_get_their_own_answers(client: GyClient) -> None:
    def session_of_updates(_: int) -> list[tuple[str | None, int | None, int | None]]:
        session = client.new_session_id()
        seen = []
        for number in range(15):
            cca = client.credit_control(
                session, RequestKind.UPDATE, number, subscriber=SUBSCRIBER, units=[UnitReport(10, used=number)]
            )
            seen.append((cca.session_id, cca.request_number, cca.result_code))
            assert (cca.session_id, cca.request_number) == (session, number)
        return seen

    with ThreadPoolExecutor(12) as pool:
        answers = [a for batch in pool.map(session_of_updates, range(12)) for a in batch]

    assert len(answers) == 12 * 15
    assert {code for _, _, code in answers} == {2001}


def test_a_header_of_length_zero_closes_that_connection_at_once(server: GyServer) -> None:
    peer = RawPeer(server.port)
    try:
        assert peer.exchange_capabilities().result_code == 2001
        peer.sock.sendall(bytes([1, 0, 0, 0]) + bytes(16))

        assert peer.closed_by_server(within=3)
    finally:
        peer.close()


def test_garbage_bytes_on_another_connection_do_not_stop_the_server(server: GyServer, client: GyClient) -> None:
    garbage = RawPeer(server.port)
    try:
        garbage.sock.sendall(b"GET / HTTP/1.1\r\nHost: ocs\r\n\r\n" + bytes(range(256)))
        assert garbage.closed_by_server(within=3)
    finally:
        garbage.close()
    late = new_client(server.port, LATE_CLIENT_HOST)

    late.start()
    try:
        cca = late.credit_control(
            late.new_session_id(), RequestKind.INITIAL, 0, subscriber=SUBSCRIBER, units=[UnitReport(10)]
        )
    finally:
        late.stop()

    assert cca.result_code == 2001
    assert (
        client.credit_control(
            client.new_session_id(), RequestKind.INITIAL, 0, subscriber=SUBSCRIBER, units=[UnitReport(10)]
        ).result_code
        == 2001
    )


def test_a_client_leaving_is_disconnected_cleanly(server: GyServer) -> None:
    passing = new_client(server.port, PASSING_CLIENT_HOST)
    passing.start()
    assert PASSING_CLIENT_HOST in server.connected_peers()

    passing.stop()

    assert eventually(lambda: PASSING_CLIENT_HOST not in server.connected_peers())


def test_a_disconnect_peer_request_is_answered_before_the_peer_leaves(server: GyServer) -> None:
    peer = RawPeer(server.port)
    try:
        peer.exchange_capabilities()
        assert eventually(lambda: RAW_HOST in server.connected_peers())

        dpa = peer.disconnect()
    finally:
        peer.close()

    assert (dpa.result_code, dpa.origin_host) == (2001, OCS_HOST.encode())
    assert eventually(lambda: RAW_HOST not in server.connected_peers())
