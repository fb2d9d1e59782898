"""The Diameter Gy front of the online charging engine: the OCS side of credit control (RFC 8506, TS 32.299).

`GyServer` listens on TCP, answers the base protocol (CER/CEA, DWR/DWA, DPR/DPA, done by python-diameter's
`Node`), turns each Credit-Control-Request into a `ChargingRequest`, calls the engine, and turns its
`ChargingAnswer` into a Credit-Control-Answer.

How python-diameter runs, and why the server is built the way it is:
- one thread selects on every socket; each peer connection has a reader thread (it parses and dispatches
  messages) and a writer thread (it encodes them). Requests reach the application on the reader thread, so
  the engine runs on a pool of our own: a slow engine never stops a peer's watchdogs or other requests;
- it checks a request's required AVPs itself (5005 before the engine sees it) and answers CER, DWR and DPR;
- a few of its edges are guarded here: a message header announcing a length of 0 makes its reader spin on
  the same bytes forever, so a peer's byte stream is framed and checked before the library buffers it; and
  its own duplicate check (T flag) would answer a retransmitted request with 5012, while the engine answers
  a repeated (Session-Id, CC-Request-Number) with its first answer, which is what RFC 8506 wants.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from diameter.message import Avp
from diameter.message import constants as dc
from diameter.message.avp.grouped import (
    FailedAvp,
    FinalUnitIndication,
    GrantedServiceUnit,
    MultipleServicesCreditControl,
)
from diameter.node import Node
from diameter.node.application import Application
from diameter.node.peer import PEER_READY_STATES

from mvne.charging.online.messages import (
    DIAMETER_CODES,
    SERVICE_CONTEXTS,
    ChargingAnswer,
    ChargingRequest,
    RequestKind,
    Service,
    SubscriberKind,
    UnitGrant,
    UnitRequest,
)

logger = logging.getLogger("mvne.diameter")

Handler = Callable[[ChargingRequest], ChargingAnswer]

CREDIT_CONTROL_APPLICATION = 4
TGPP_VENDOR = 10415

REQUEST_KINDS: dict[int, RequestKind] = {
    1: RequestKind.INITIAL,
    2: RequestKind.UPDATE,
    3: RequestKind.TERMINATION,
    4: RequestKind.EVENT,
}
FAILURE_HANDLING: dict[str, int] = {"terminate": 0, "continue": 1, "retry_and_terminate": 2}
# REDIRECT (1) and RESTRICT_ACCESS (2) need a Redirect-Server or filters that `FinalUnit` does not carry.
# Final-Unit-Action (449): 0 TERMINATE, 2 RESTRICT_ACCESS (a throttling spend cap: the gateway keeps only what
# its own restriction rules allow, such as the top-up page or a slow lane).
FINAL_UNIT_ACTIONS: dict[str, int] = {"terminate": 0, "restrict_access": 2}
REPORTING_REASON_FINAL = 2
SUBSCRIPTION_E164 = 0
SUBSCRIPTION_IMSI = 1

# Gy messages are a few kilobytes; a peer announcing more is broken or hostile, and the library would buffer
# it by concatenation (quadratic in its size) before finding out.
MAX_MESSAGE_LENGTH = 256 * 1024
_U32 = 2**32 - 1
_U64 = 2**64 - 1


class _Refusal(Exception):
    """A request answered without calling the engine: its Result-Code and the AVPs it failed on."""

    def __init__(self, result_code: int, detail: str, failed: Iterable[Any] = ()) -> None:
        super().__init__(detail)
        self.result_code = result_code
        self.detail = detail
        self.failed = list(failed)


class _FrameGuard:
    """Follows the Diameter framing of one peer's byte stream; refuses it at the first impossible header."""

    def __init__(self) -> None:
        self._head = b""
        self._skip = 0

    def accept(self, data: bytes) -> bool:
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            take = data[pos : pos + 4 - len(self._head)]
            self._head += take
            pos += len(take)
            if len(self._head) < 4:
                return True
            version, length = self._head[0], int.from_bytes(self._head[1:4], "big")
            self._head = b""
            if version != 1 or length < 20 or length % 4 or length > MAX_MESSAGE_LENGTH:
                return False
            self._skip = length - 4
        return True


class _GyNode(Node):
    """python-diameter's node, with each connection's bytes checked and each request tied to its connection."""

    def _add_peer_connection(self, conn: Any, peer_socket: Any, proto: int) -> str | None:
        ident: str | None = super()._add_peer_connection(conn, peer_socket, proto)
        if ident is not None:
            guard = _FrameGuard()
            buffer_bytes = conn.add_in_bytes

            def add_in_bytes(data: bytes) -> None:
                if guard.accept(data):
                    buffer_bytes(data)
                else:
                    logger.warning("closing peer connection %s:%s: bytes that are not Diameter", conn.ip, conn.port)
                    conn.close()

            conn.add_in_bytes = add_in_bytes
        return ident

    def _receive_app_request(self, conn: Any, message: Any) -> None:
        # The answer goes back on the connection the request came in on. The library would look it up by
        # hop-by-hop identifier across all peers, which are only unique per connection.
        message.gy_connection = conn
        super()._receive_app_request(conn, message)


class _GyApplication(Application):
    """Credit control (application 4) on the node: requests go to a pool of workers that call the engine."""

    def __init__(self, handler: Handler, *, workers: int, max_pending: int) -> None:
        super().__init__(CREDIT_CONTROL_APPLICATION, is_auth_application=True)
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gy-ocs")
        self._max_pending = max_pending
        self._pending = 0
        self._pending_lock = threading.Lock()
        # The node's bookkeeping for sent answers (statistics counters) is not safe from several threads.
        self._send_lock = threading.Lock()

    def handle_request(self, message: Any) -> None:
        if message.header.command_code != dc.CMD_CREDIT_CONTROL:
            self._send(_error_answer(self, message, dc.E_RESULT_CODE_DIAMETER_COMMAND_UNSUPPORTED), message)
            return
        with self._pending_lock:
            busy = self._pending >= self._max_pending
            if not busy:
                self._pending += 1
        if busy:
            logger.warning("too busy: %s requests pending, answering 3004", self._max_pending)
            self._send(_error_answer(self, message, dc.E_RESULT_CODE_DIAMETER_TOO_BUSY), message)
            return
        try:
            self._pool.submit(self._answer, message)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._done()

    def _done(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def _answer(self, ccr: Any) -> None:
        try:
            self._send(self._credit_control_answer(ccr), ccr)
        except Exception:
            logger.exception("could not answer a credit-control request")
        finally:
            self._done()

    def _credit_control_answer(self, ccr: Any) -> Any:
        try:
            request = _charging_request(ccr)
        except _Refusal as refusal:
            logger.info("refused CCR %s: %s (%s)", ccr.session_id, refusal.result_code, refusal.detail)
            return _refusal_answer(self, ccr, refusal)
        try:
            answer = self._handler(request)
            return _cca_from_answer(self, ccr, request, answer)
        except Exception:
            logger.exception(
                "the charging engine failed on session %s request %s", request.session_id, request.sequence
            )
            failure = _Refusal(dc.E_RESULT_CODE_DIAMETER_UNABLE_TO_COMPLY, "the charging engine failed")
            return _refusal_answer(self, ccr, failure)

    def _send(self, answer: Any, request: Any) -> None:
        conn = getattr(request, "gy_connection", None)
        if conn is None or conn.state not in PEER_READY_STATES:
            logger.warning(
                "peer gone before session %s was answered; answer dropped", getattr(request, "session_id", None)
            )
            return
        with self._send_lock:
            self.node.send_message(conn, answer)

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
        super().stop()


class GyServer:
    """The OCS's Diameter Gy endpoint: answers CCRs from the listed peers with the engine's decisions."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        origin_host: str,
        origin_realm: str,
        peers: Iterable[str],
        workers: int = 32,
        max_pending: int = 1024,
    ) -> None:
        if port <= 0:
            raise ValueError("port must be a TCP port number (the node does not listen on port 0)")
        self.host = host
        self.port = port
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self._node = _GyNode(origin_host, origin_realm, ip_addresses=[host], tcp_port=port, vendor_ids=[TGPP_VENDOR])
        self._node.product_name = "mvne-ocs"
        # Off: a retransmission (T flag) must reach the engine, which answers a repeated request as the first.
        self._node.retransmit_queue_size = 0
        # How often the node's loop wakes up without traffic: its timers' resolution and the bound on `stop`.
        self._node.wakeup_interval = 1
        # Peers must be known before they connect: the library answers a CER from an unknown Origin-Host with
        # 3010 DIAMETER_UNKNOWN_PEER, and adding one while it runs would race its I/O loop over the peer table.
        known = [self._node.add_peer(f"aaa://{identity.lower()}", origin_realm) for identity in peers]
        self._app = _GyApplication(handler, workers=workers, max_pending=max_pending)
        self._node.add_application(self._app, known, realms=[origin_realm])
        self._started = False

    def start(self) -> None:
        """Listen and serve until `stop` (once: a stopped server is not started again)."""
        self._node.start()
        self._started = True
        logger.info("Gy server %s listening on %s:%s", self.origin_host, self.host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect the peers (DPR/DPA), stop listening and finish the requests in hand."""
        if not self._started:
            return
        self._started = False
        self._node.stop(wait_timeout=max(1, round(timeout)))
        logger.info("Gy server %s stopped", self.origin_host)

    def connected_peers(self) -> list[str]:
        """Diameter identities of the peers connected and past capabilities exchange."""
        return sorted(
            conn.host_identity
            for conn in list(self._node.connections.values())
            if conn.state in PEER_READY_STATES and conn.host_identity
        )

    def __enter__(self) -> GyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _charging_request(ccr: Any) -> ChargingRequest:
    """The engine's request for a decoded Credit-Control-Request; raises `_Refusal` when it cannot be read."""
    kind = REQUEST_KINDS.get(ccr.cc_request_type)
    if kind is None:
        raise _Refusal(
            dc.E_RESULT_CODE_DIAMETER_INVALID_AVP_VALUE,
            f"CC-Request-Type {ccr.cc_request_type}",
            [Avp.new(dc.AVP_CC_REQUEST_TYPE, value=ccr.cc_request_type)],
        )
    service = service_for_context(ccr.service_context_id)
    if service is None:
        # RFC 8506 section 9.1: RATING_FAILED is for "an AVP value that is not recognized or supported in the
        # rating", with the AVP in Failed-AVP. Not 4011 CREDIT_CONTROL_NOT_APPLICABLE: that one lets the
        # network give the service away without credit control.
        raise _Refusal(
            dc.E_RESULT_CODE_DIAMETER_RATING_FAILED,
            f"Service-Context-Id {ccr.service_context_id!r}",
            [Avp.new(dc.AVP_SERVICE_CONTEXT_ID, value=str(ccr.service_context_id))],
        )
    # A session's later requests are known by their Session-Id (RFC 8506 makes Subscription-Id optional there).
    opening = kind in (RequestKind.INITIAL, RequestKind.EVENT)
    subscriber, subscriber_kind = _subscriber(ccr) if opening or ccr.subscription_id else ("", SubscriberKind.MSISDN)
    service_information = ccr.service_information
    return ChargingRequest(
        session_id=ccr.session_id,
        kind=kind,
        sequence=ccr.cc_request_number,
        service=service,
        subscriber=subscriber,
        subscriber_kind=subscriber_kind,
        units=tuple(_unit_request(mscc, service) for mscc in ccr.multiple_services_credit_control),
        visited_plmn=_visited_plmn(service_information),
        called_number=_called_number(service_information),
        # The library decodes Time AVPs as naive local time; astimezone reads a naive value as local time.
        at=ccr.event_timestamp.astimezone(dt.UTC) if ccr.event_timestamp is not None else None,
    )


def service_for_context(context_id: object) -> Service | None:
    """The service of a Service-Context-Id, 3GPP's `[[ext.]MNC.MCC.]Release.` prefix allowed."""
    if not isinstance(context_id, str) or "@" not in context_id:
        return None
    local, _, domain = context_id.strip().rpartition("@")
    return SERVICE_CONTEXTS.get(f"{local.rsplit('.', 1)[-1]}@{domain.lower()}")


def _subscriber(ccr: Any) -> tuple[str, SubscriberKind]:
    ids = list(ccr.subscription_id or [])
    if not ids and ccr.service_information is not None:
        ids = list(ccr.service_information.subscription_id or [])
    if not ids:
        raise _Refusal(
            dc.E_RESULT_CODE_DIAMETER_MISSING_AVP,
            "no Subscription-Id",
            [
                Avp.new(
                    dc.AVP_SUBSCRIPTION_ID,
                    value=[
                        Avp.new(dc.AVP_SUBSCRIPTION_ID_TYPE, value=SUBSCRIPTION_E164),
                        Avp.new(dc.AVP_SUBSCRIPTION_ID_DATA, value=""),
                    ],
                )
            ],
        )
    # A line is known by its MSISDN or its IMSI; the MSISDN first, as the engine's default identity.
    for wanted, kind in ((SUBSCRIPTION_E164, SubscriberKind.MSISDN), (SUBSCRIPTION_IMSI, SubscriberKind.IMSI)):
        for sub in ids:
            if sub.subscription_id_type == wanted:
                data = (sub.subscription_id_data or "").strip().removeprefix("+")
                if not data:
                    raise _Refusal(dc.E_RESULT_CODE_DIAMETER_INVALID_AVP_VALUE, "empty Subscription-Id-Data")
                return data, kind
    raise _Refusal(dc.E_RESULT_CODE_DIAMETER_USER_UNKNOWN, "no E.164 or IMSI Subscription-Id")


def _units(container: Any, service: Service) -> int | None:
    if container is None:
        return None
    if service is Service.DATA:
        if container.cc_total_octets is not None:
            return int(container.cc_total_octets)
        parts = [getattr(container, "cc_input_octets", None), getattr(container, "cc_output_octets", None)]
        present = [int(p) for p in parts if p is not None]
        return sum(present) if present else None
    if service is Service.VOICE:
        return None if container.cc_time is None else int(container.cc_time)
    return None if container.cc_service_specific_units is None else int(container.cc_service_specific_units)


def _unit_request(mscc: Any, service: Service) -> UnitRequest:
    if mscc.rating_group is None:
        raise _Refusal(
            dc.E_RESULT_CODE_DIAMETER_RATING_FAILED,
            "a Multiple-Services-Credit-Control without Rating-Group",
            [Avp.new(dc.AVP_RATING_GROUP, value=0)],
        )
    used_containers = [u for u in mscc.used_service_unit if u is not None]
    used = sum(_units(u, service) or 0 for u in used_containers)
    final = REPORTING_REASON_FINAL in (mscc.reporting_reason or []) or any(
        u.reporting_reason == REPORTING_REASON_FINAL for u in used_containers
    )
    # No Requested-Service-Unit: the network asks for nothing (0); an empty one: whatever the engine grants.
    requested = 0 if mscc.requested_service_unit is None else _units(mscc.requested_service_unit, service)
    return UnitRequest(rating_group=int(mscc.rating_group), requested=requested, used=used, final=final)


def _visited_plmn(service_information: Any) -> str | None:
    ps = getattr(service_information, "ps_information", None)
    value = getattr(ps, "tgpp_sgsn_mcc_mnc", None)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isdigit() and len(value) in (5, 6):
        return value
    return None


def _called_number(service_information: Any) -> str | None:
    ims = getattr(service_information, "ims_information", None)
    return e164_digits(getattr(ims, "called_party_address", None))


def e164_digits(address: object) -> str | None:
    """The E.164 digits of a tel: or sip: URI or a plain number, or None when it holds no number."""
    if not isinstance(address, str):
        return None
    value = address.strip()
    scheme, sep, rest = value.partition(":")
    if sep and scheme.lower() in ("tel", "sip", "sips"):
        value = rest
    value = value.split(";", 1)[0].split("@", 1)[0]
    value = value.removeprefix("+")
    for visual in "-.() ":
        value = value.replace(visual, "")
    if value.isdigit() and 3 <= len(value) <= 15:
        return value
    return None


def unset_avps_as_none(message: Any) -> Any:
    """The message with every AVP attribute it leaves unset set to None: it encodes the same, twice as fast."""
    # An unset attribute is looked up through the class's __getattr__, a scan of all its AVP definitions,
    # once per definition when the message is encoded.
    attributes = message.__dict__
    for definition in message.avp_def:
        attributes.setdefault(definition.attr_name, None)
    return message


def _answer_skeleton(app: Application, ccr: Any, result_code: int) -> Any:
    cca = unset_avps_as_none(app.generate_answer(ccr, result_code=result_code))
    if ccr.cc_request_type is not None:
        cca.cc_request_type = ccr.cc_request_type
    if ccr.cc_request_number is not None:
        cca.cc_request_number = ccr.cc_request_number
    return cca


def _refusal_answer(app: Application, ccr: Any, refusal: _Refusal) -> Any:
    cca = _answer_skeleton(app, ccr, refusal.result_code)
    if refusal.failed:
        cca.failed_avp = [FailedAvp(additional_avps=refusal.failed)]
    return cca


def _error_answer(app: Application, request: Any, result_code: int) -> Any:
    answer = app.generate_answer(request, result_code=result_code)
    if hasattr(answer, "avp_def"):
        unset_avps_as_none(answer)
    # 3xxx are protocol errors: RFC 6733 section 7.1 wants the E bit on their answers.
    answer.header.is_error = 3000 <= result_code < 4000
    return answer


def _checked(value: int | None, limit: int, name: str) -> int | None:
    if value is None:
        return None
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} does not fit its AVP")
    return value


def _granted_units(grant: UnitGrant, service: Service) -> GrantedServiceUnit | None:
    if grant.granted is None:
        return None
    if service is Service.DATA:
        return GrantedServiceUnit(cc_total_octets=_checked(grant.granted, _U64, "granted octets"))
    if service is Service.VOICE:
        return GrantedServiceUnit(cc_time=_checked(grant.granted, _U32, "granted seconds"))
    return GrantedServiceUnit(cc_service_specific_units=_checked(grant.granted, _U64, "granted units"))


def _final_unit(grant: UnitGrant) -> FinalUnitIndication | None:
    if grant.final_unit is None:
        return None
    action = FINAL_UNIT_ACTIONS.get(grant.final_unit.action)
    if action is None:
        logger.warning("final unit action %r unknown; sending TERMINATE", grant.final_unit.action)
        action = FINAL_UNIT_ACTIONS["terminate"]
    return FinalUnitIndication(final_unit_action=action)


def _cca_from_answer(app: Application, ccr: Any, request: ChargingRequest, answer: ChargingAnswer) -> Any:
    cca = _answer_skeleton(app, ccr, DIAMETER_CODES[answer.result])
    handling = FAILURE_HANDLING.get(answer.failure_handling)
    if handling is None:
        logger.warning("failure handling %r unknown; sending TERMINATE", answer.failure_handling)
        handling = FAILURE_HANDLING["terminate"]
    cca.credit_control_failure_handling = handling
    cca.multiple_services_credit_control = [
        MultipleServicesCreditControl(
            rating_group=_checked(grant.rating_group, _U32, "Rating-Group"),
            result_code=DIAMETER_CODES[grant.result],
            granted_service_unit=_granted_units(grant, request.service),
            validity_time=_checked(grant.validity_time, _U32, "Validity-Time"),
            final_unit_indication=_final_unit(grant),
        )
        for grant in answer.grants
    ]
    return cca
