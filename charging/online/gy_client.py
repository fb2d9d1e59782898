"""The network's side of Gy: a credit-control client, as a host network's PGW or SMF runs one, on python-diameter.

For tests and benchmarks. One `GyClient` is one Diameter peer with one TCP connection (to the OCS, or to a
relay in front of it); any number of threads may send through it at once, each waiting for its own answer.

python-diameter's client side needs three things done here for that:
- its hop-by-hop and end-to-end counters are a plain read-modify-write, so two threads can draw the same
  identifier and one of them gets the other's answer: identifiers come from our own atomic counters;
- it keeps, per request, two entries in the node that nothing removes: they are dropped after each answer;
- `Node.stop` returns only after its I/O loop wakes, so the loop wakes every second.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diameter.message.avp.grouped import (
    ImsInformation,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlRequest
from diameter.node import Node
from diameter.node.application import Application
from diameter.node.peer import PEER_READY_STATES

from mvne.charging.online.diameter import unset_avps_as_none
from mvne.charging.online.messages import SERVICE_CONTEXTS, RequestKind, Service

CREDIT_CONTROL_APPLICATION = 4
TGPP_VENDOR = 10415
REQUEST_TYPES: dict[RequestKind, int] = {
    RequestKind.INITIAL: 1,
    RequestKind.UPDATE: 2,
    RequestKind.TERMINATION: 3,
    RequestKind.EVENT: 4,
}
CONTEXT_IDS: dict[Service, str] = {service: context for context, service in SERVICE_CONTEXTS.items()}
REPORTING_REASON_FINAL = 2
SUBSCRIPTION_E164 = 0
SUBSCRIPTION_IMSI = 1


@dataclass(frozen=True)
class UnitReport:
    """One Multiple-Services-Credit-Control of a request, in the service's unit (octets, seconds, messages)."""

    rating_group: int
    # Used-Service-Unit; None sends none.
    used: int | None = None
    # Requested-Service-Unit with this many units; None with `ask` sends an empty one ("what you decide").
    requested: int | None = None
    # False sends no Requested-Service-Unit at all.
    ask: bool = True
    # 3GPP-Reporting-Reason FINAL in the Used-Service-Unit: the last report for this rating group.
    final: bool = False


@dataclass(frozen=True)
class GrantResult:
    """One Multiple-Services-Credit-Control of an answer."""

    rating_group: int | None
    result_code: int | None
    granted: int | None
    validity_time: int | None
    final_unit_action: int | None


@dataclass(frozen=True)
class CreditControlResult:
    """A Credit-Control-Answer as plain values."""

    session_id: str | None
    result_code: int | None
    request_type: int | None
    request_number: int | None
    origin_host: str | None
    failure_handling: int | None
    grants: tuple[GrantResult, ...]
    # Codes of the AVPs inside Failed-AVP, when the request was refused for them.
    failed_avps: tuple[int, ...] = ()

    def grant(self, rating_group: int) -> GrantResult:
        """The answer's Multiple-Services-Credit-Control for a rating group."""
        for grant in self.grants:
            if grant.rating_group == rating_group:
                return grant
        raise KeyError(f"no Multiple-Services-Credit-Control for rating group {rating_group}")


def _id_counter() -> itertools.count[int]:
    # RFC 6733 section 3: identifiers start from a random value; next() on a count is atomic in CPython.
    return itertools.count(random.randint(1, 2**31))


class _ClientApplication(Application):
    """Credit control (application 4) as a client: sends requests and waits for their answers."""

    def __init__(self) -> None:
        super().__init__(CREDIT_CONTROL_APPLICATION, is_auth_application=True)
        self._hop_by_hop = _id_counter()
        self._end_to_end = _id_counter()

    def request(self, message: Any, timeout: float) -> Any:
        header = message.header
        header.application_id = CREDIT_CONTROL_APPLICATION
        header.hop_by_hop_identifier = (next(self._hop_by_hop) & 0xFFFFFFFF) or 1
        header.end_to_end_identifier = (next(self._end_to_end) & 0xFFFFFFFF) or 1
        key = f"{header.hop_by_hop_identifier}:{header.end_to_end_identifier}"
        try:
            return self.send_request(message, timeout=timeout)
        finally:
            self.node._app_waiting_answer.pop(key, None)
            self.node._origin_waiting_answer.pop(key, None)

    def handle_request(self, message: Any) -> None:
        # An OCS's RAR or ASR: a test client does not act on them.
        pass


class GyClient:
    """A credit-control client peer connected to one Diameter peer (the OCS or a relay) over TCP."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        origin_host: str,
        origin_realm: str,
        destination_realm: str,
        peer_host: str,
        timeout: float = 5.0,
    ) -> None:
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.destination_realm = destination_realm
        self.timeout = timeout
        self._node = Node(origin_host, origin_realm, vendor_ids=[TGPP_VENDOR])
        self._node.product_name = "mvne-gy-client"
        self._node.wakeup_interval = 1
        self._peer = self._node.add_peer(
            f"aaa://{peer_host}:{port};transport=tcp", destination_realm, [host], is_persistent=True
        )
        self._app = _ClientApplication()
        self._node.add_application(self._app, [self._peer])
        self._started = False

    def start(self, timeout: float = 10.0) -> None:
        """Connect and complete the capabilities exchange; raises when the peer does not accept us in time."""
        self._node.start()
        self._started = True
        self._app.wait_for_ready(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (DPR/DPA) and stop the node."""
        if not self._started:
            return
        self._started = False
        self._node.stop(wait_timeout=max(1, round(timeout)))

    def __enter__(self) -> GyClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def peer_identity(self) -> str | None:
        """The Origin-Host the peer gave in its CEA."""
        conn = self._peer.connection
        return conn.host_identity if conn is not None and conn.host_identity else None

    @property
    def peer_applications(self) -> list[int]:
        """Auth applications both sides advertised in the capabilities exchange."""
        conn = self._peer.connection
        return sorted(conn.auth_application_ids) if conn is not None else []

    def new_session_id(self) -> str:
        """A fresh Session-Id of this client's identity."""
        session_id: str = self._node.session_generator.next_id()
        return session_id

    def watchdog(self, timeout: float = 5.0) -> bool:
        """Send a DWR and tell whether a DWA came back in time."""
        conn = self._peer.connection
        if conn is None or conn.state not in PEER_READY_STATES:
            return False
        answered = self._peer.counters.dwa
        self._node.send_dwr(conn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._peer.counters.dwa > answered:
                return True
            time.sleep(0.01)
        return False

    def build_ccr(
        self,
        session_id: str,
        kind: RequestKind,
        number: int,
        *,
        service: Service = Service.DATA,
        subscriber: str | None = None,
        subscriber_type: int = SUBSCRIPTION_E164,
        units: Sequence[UnitReport] = (),
        service_context_id: str | None = None,
        event_timestamp: dt.datetime | None = None,
        visited_plmn: str | None = None,
        called_party: str | None = None,
    ) -> Any:
        """A Credit-Control-Request from plain values, to send as it is or to alter first."""
        ccr = CreditControlRequest()
        ccr.session_id = session_id
        ccr.origin_host = self.origin_host.encode()
        ccr.origin_realm = self.origin_realm.encode()
        ccr.destination_realm = self.destination_realm.encode()
        ccr.auth_application_id = CREDIT_CONTROL_APPLICATION
        ccr.service_context_id = service_context_id or CONTEXT_IDS[service]
        ccr.cc_request_type = REQUEST_TYPES[kind]
        ccr.cc_request_number = number
        if subscriber is not None:
            ccr.add_subscription_id(subscriber_type, subscriber)
        if event_timestamp is not None:
            ccr.event_timestamp = event_timestamp
        if units:
            ccr.multiple_services_indicator = 1
        for unit in units:
            ccr.add_multiple_services_credit_control(
                rating_group=unit.rating_group,
                requested_service_unit=_unit_container(RequestedServiceUnit, service, unit.requested)
                if unit.ask
                else None,
                used_service_unit=_used(service, unit),
            )
        if visited_plmn is not None or called_party is not None:
            ccr.service_information = ServiceInformation(
                ps_information=PsInformation(tgpp_sgsn_mcc_mnc=visited_plmn) if visited_plmn is not None else None,
                ims_information=ImsInformation(called_party_address=called_party) if called_party is not None else None,
            )
        return unset_avps_as_none(ccr)

    def send(self, ccr: Any, *, service: Service = Service.DATA, timeout: float | None = None) -> CreditControlResult:
        """Send a built request and wait for its answer; TimeoutError when none comes, NotRoutable unconnected."""
        answer = self._app.request(ccr, timeout if timeout is not None else self.timeout)
        return _result(answer, service)

    def credit_control(
        self,
        session_id: str,
        kind: RequestKind,
        number: int,
        *,
        service: Service = Service.DATA,
        subscriber: str | None = None,
        subscriber_type: int = SUBSCRIPTION_E164,
        units: Sequence[UnitReport] = (),
        service_context_id: str | None = None,
        event_timestamp: dt.datetime | None = None,
        visited_plmn: str | None = None,
        called_party: str | None = None,
        timeout: float | None = None,
    ) -> CreditControlResult:
        """Send one CCR (initial, update, termination or event) and return its CCA."""
        ccr = self.build_ccr(
            session_id,
            kind,
            number,
            service=service,
            subscriber=subscriber,
            subscriber_type=subscriber_type,
            units=units,
            service_context_id=service_context_id,
            event_timestamp=event_timestamp,
            visited_plmn=visited_plmn,
            called_party=called_party,
        )
        return self.send(ccr, service=service, timeout=timeout)


def _unit_container(cls: Any, service: Service, amount: int | None) -> Any:
    if amount is None:
        return cls()
    if service is Service.DATA:
        return cls(cc_total_octets=amount)
    if service is Service.VOICE:
        return cls(cc_time=amount)
    return cls(cc_service_specific_units=amount)


def _used(service: Service, unit: UnitReport) -> list[Any] | None:
    if unit.used is None and not unit.final:
        return None
    used = _unit_container(UsedServiceUnit, service, unit.used if unit.used is not None else 0)
    if unit.final:
        used.reporting_reason = REPORTING_REASON_FINAL
    return [used]


def _granted(gsu: Any, service: Service) -> int | None:
    if gsu is None:
        return None
    value = {
        Service.DATA: gsu.cc_total_octets,
        Service.VOICE: gsu.cc_time,
        Service.SMS: gsu.cc_service_specific_units,
    }[service]
    return None if value is None else int(value)


def _result(cca: Any, service: Service) -> CreditControlResult:
    grants = tuple(
        GrantResult(
            rating_group=mscc.rating_group,
            result_code=mscc.result_code,
            granted=_granted(mscc.granted_service_unit, service),
            validity_time=mscc.validity_time,
            final_unit_action=mscc.final_unit_indication.final_unit_action
            if mscc.final_unit_indication is not None
            else None,
        )
        for mscc in getattr(cca, "multiple_services_credit_control", None) or []
    )
    failed = tuple(
        avp.code for failed_avp in getattr(cca, "failed_avp", None) or [] for avp in failed_avp.additional_avps
    )
    origin_host = getattr(cca, "origin_host", None)
    return CreditControlResult(
        session_id=getattr(cca, "session_id", None),
        result_code=getattr(cca, "result_code", None),
        request_type=getattr(cca, "cc_request_type", None),
        request_number=getattr(cca, "cc_request_number", None),
        origin_host=origin_host.decode() if isinstance(origin_host, bytes) else origin_host,
        failure_handling=getattr(cca, "credit_control_failure_handling", None),
        grants=grants,
        failed_avps=failed,
    )
