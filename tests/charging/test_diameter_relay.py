"""Our Gy client and server through freeDiameter, an independent Diameter implementation, as a relay (DRA).

freeDiameterd parses every message against its own dictionaries (base, credit control, 3GPP) before it routes
it, so a CCR and a CCA that cross it were well formed to someone else than python-diameter too.

What freeDiameter 1.2.1 (Debian) needs here, found by trying:
- no TLS certificate: without TLS_Cred it runs with TLS disabled (and says so); SecPort = 0 closes the TLS port;
- our client, which connects to it, allowed by the `acl_wl` extension with ALLOW_IPSEC (ALLOW_OLD_TLS alone
  is refused with DIAMETER_NO_COMMON_SECURITY, since the client offers no TLS);
- our server as a ConnectPeer with No_TLS; `rt_default` routes its realm to it (a realm match would route it
  anyway; the rule makes the route explicit);
- it ignores a loopback ListenOn and listens on every IPv4 address of the port.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mvne.charging.online.diameter import GyServer
from mvne.charging.online.gy_client import GyClient, UnitReport
from mvne.charging.online.messages import (
    ChargingAnswer,
    ChargingRequest,
    FinalUnit,
    RequestKind,
    Result,
    UnitGrant,
    UnitRequest,
)
from tests.conftest import free_port, skip_or_fail

FREEDIAMETERD = shutil.which("freeDiameterd")

OCS_HOST, OCS_REALM = "ocs.test.example", "ocs.example"
DRA_HOST, DRA_REALM = "dra.test.example", "dra.example"
CLIENT_HOST, CLIENT_REALM = "pgw.test.example", "net.example"
SUBSCRIBER = "33612345678"


class Engine:
    """Grants a megabyte per rating group, the last one for group 30; records the requests."""

    def __init__(self) -> None:
        self.requests: list[ChargingRequest] = []
        self._lock = threading.Lock()

    def __call__(self, request: ChargingRequest) -> ChargingAnswer:
        with self._lock:
            self.requests.append(request)
        grants = tuple(
            UnitGrant(u.rating_group, Result.SUCCESS)
            if u.final
            else UnitGrant(
                u.rating_group,
                Result.SUCCESS,
                granted=1_000_000,
                validity_time=600,
                final_unit=FinalUnit() if u.rating_group == 30 else None,
            )
            for u in request.units
        )
        return ChargingAnswer(request.session_id, request.sequence, Result.SUCCESS, grants=grants)


@dataclass
class Relay:
    engine: Engine
    server: GyServer
    port: int
    log: Path


def extension_dir() -> Path:
    # Debian installs the daemon in bin/ and its extensions in lib/freeDiameter/ of the same prefix.
    return Path(str(FREEDIAMETERD)).resolve().parent.parent / "lib" / "freeDiameter"


def write_config(folder: Path, port: int, ocs_port: int) -> Path:
    extensions = extension_dir()
    if not (extensions / "dict_dcca_3gpp.fdx").exists():
        skip_or_fail(f"freeDiameter extensions not found in {extensions} (Debian package freediameter-extensions)")
    (folder / "acl.conf").write_text(f"ALLOW_IPSEC {CLIENT_HOST}\n")
    (folder / "routes.conf").write_text(f'dr="{OCS_REALM}" : "{OCS_HOST}" += 100 ;\n')
    config = folder / "freeDiameter.conf"
    config.write_text(
        "\n".join(
            [
                f'Identity = "{DRA_HOST}";',
                f'Realm = "{DRA_REALM}";',
                f"Port = {port};",
                "SecPort = 0;",
                "No_SCTP;",
                "No_IPv6;",
                # Dictionaries first: credit control needs NASREQ's, and the 3GPP one needs both.
                f'LoadExtension = "{extensions / "dict_nasreq.fdx"}";',
                f'LoadExtension = "{extensions / "dict_dcca.fdx"}";',
                f'LoadExtension = "{extensions / "dict_dcca_3gpp.fdx"}";',
                # 0x0080: dump each message relayed, decoded with the dictionaries.
                f'LoadExtension = "{extensions / "dbg_msg_dumps.fdx"}" : "0x0080";',
                f'LoadExtension = "{extensions / "rt_default.fdx"}" : "{folder / "routes.conf"}";',
                f'LoadExtension = "{extensions / "acl_wl.fdx"}" : "{folder / "acl.conf"}";',
                f'ConnectPeer = "{OCS_HOST}" {{ ConnectTo = "127.0.0.1"; Port = {ocs_port}; No_TLS; No_SCTP; }};',
                "",
            ]
        )
    )
    return config


@contextlib.contextmanager
def freediameter_relay(folder: Path, server: GyServer) -> Iterator[tuple[int, Path]]:
    """freeDiameterd relaying to `server` (once it has connected to it): its port and its log."""
    if FREEDIAMETERD is None:
        skip_or_fail("needs freeDiameterd (Debian packages freediameter, freediameter-extensions)")
    port = free_port()
    log = folder / "freeDiameterd.log"
    config = write_config(folder, port, server.port)
    with log.open("wb") as out:
        daemon = subprocess.Popen([str(FREEDIAMETERD), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            if DRA_HOST in server.connected_peers() or daemon.poll() is not None:
                break
            threading.Event().wait(0.1)
        if DRA_HOST not in server.connected_peers():
            pytest.fail(f"freeDiameterd did not connect to the Gy server:\n{log.read_text()[-3000:]}")
        yield port, log
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    engine = Engine()
    server = GyServer(
        engine, host="127.0.0.1", port=free_port(), origin_host=OCS_HOST, origin_realm=OCS_REALM, peers=[DRA_HOST]
    )
    server.start()
    try:
        with freediameter_relay(tmp_path, server) as (port, log):
            yield Relay(engine, server, port, log)
    finally:
        server.stop()


def test_a_credit_control_session_crosses_freediameter_and_is_answered_by_our_server(relay: Relay) -> None:
    client = GyClient(
        "127.0.0.1",
        relay.port,
        origin_host=CLIENT_HOST,
        origin_realm=CLIENT_REALM,
        destination_realm=OCS_REALM,
        peer_host=DRA_HOST,
    )
    client.start()
    try:
        assert client.peer_identity == DRA_HOST
        session = client.new_session_id()
        initial = client.credit_control(
            session,
            RequestKind.INITIAL,
            0,
            subscriber=SUBSCRIBER,
            units=[UnitReport(10), UnitReport(30)],
            visited_plmn="20801",
        )
        update = client.credit_control(
            session, RequestKind.UPDATE, 1, subscriber=SUBSCRIBER, units=[UnitReport(10, used=400_000)]
        )
        termination = client.credit_control(
            session,
            RequestKind.TERMINATION,
            2,
            subscriber=SUBSCRIBER,
            units=[UnitReport(10, used=250_000, ask=False, final=True)],
        )
    finally:
        client.stop()

    # Answered by our server through the relay, not by the relay itself (which would answer 3002 from itself).
    assert [(a.result_code, a.origin_host, a.request_number) for a in (initial, update, termination)] == [
        (2001, OCS_HOST, 0),
        (2001, OCS_HOST, 1),
        (2001, OCS_HOST, 2),
    ]
    assert (initial.grant(10).granted, initial.grant(10).validity_time) == (1_000_000, 600)
    assert initial.grant(30).final_unit_action == 0
    assert update.grant(10).granted == 1_000_000
    assert [(r.kind, r.sequence, r.units) for r in relay.engine.requests] == [
        (RequestKind.INITIAL, 0, (UnitRequest(10, requested=None), UnitRequest(30, requested=None))),
        (RequestKind.UPDATE, 1, (UnitRequest(10, requested=None, used=400_000),)),
        (RequestKind.TERMINATION, 2, (UnitRequest(10, requested=0, used=250_000, final=True),)),
    ]
    assert relay.engine.requests[0].visited_plmn == "20801"


def test_freediameter_reads_our_answers_with_its_own_dictionaries(relay: Relay) -> None:
    client = GyClient(
        "127.0.0.1",
        relay.port,
        origin_host=CLIENT_HOST,
        origin_realm=CLIENT_REALM,
        destination_realm=OCS_REALM,
        peer_host=DRA_HOST,
    )
    client.start()
    try:
        client.credit_control(
            client.new_session_id(), RequestKind.INITIAL, 0, subscriber=SUBSCRIBER, units=[UnitReport(30)]
        )
    finally:
        client.stop()

    dump = relay.log.read_text(errors="replace")
    answer = dump[dump.index("'Credit-Control-Answer'") :]
    for avp in ("'Multiple-Services-Credit-Control'", "'Granted-Service-Unit'", "'CC-Total-Octets'"):
        assert avp in answer
    assert "'Final-Unit-Action'" in answer
    assert "'TERMINATE'" in answer
