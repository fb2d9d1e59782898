"""Host-network (MNO) simulator: a JSON REST provisioning API, injectable faults, and usage files.

Routes are relative: the platform mounts the app at `/sim/network`, `mvne sim network` serves it alone.

    POST   /subscribers                    provision (201 new, 200 same request again)
    GET    /subscribers/<imsi>             read (never Ki/OPc)
    POST   /subscribers/<imsi>/suspend     active -> suspended
    POST   /subscribers/<imsi>/resume      suspended -> active
    POST   /subscribers/<imsi>/bar         {"services": [...]}
    POST   /subscribers/<imsi>/unbar       {"services": [...]}
    POST   /subscribers/<imsi>/swap-sim    {"iccid", "imsi", "ki", "opc"}: the line moves to the new IMSI
    DELETE /subscribers/<imsi>             terminate; the MSISDN and ICCID become free
    POST   /usage/emit                     write one usage file into storage
    POST   /sim-admin/faults               {"operation", "status", "count", "when"}; DELETE clears
    POST   /sim-admin/latency              {"ms"}
    POST   /sim-admin/reset                forget subscribers, faults and latency
    GET    /healthz

Repeating an operation whose effect is already in place answers 200 and changes nothing, so callers
can retry blindly; `invalid_transition` (409) is for changes to a terminated line. A sandbox test
number (an MSISDN ending in 9900 to 9999, docs/sandbox.md) is never provisioned: 403 `test_msisdn_refused`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from mvne.infra.journal import JournalFile
from mvne.infra.storage import Storage
from mvne.provisioning.sandbox import is_test_msisdn
from mvne.provisioning.usage_files import (
    IMSI_RE,
    MSISDN_RE,
    NETWORK_NAME_RE,
    SERVICES,
    UsageFileRecord,
    new_usage_file_key,
    parse_timestamp,
    write_usage_file,
)

ICCID_RE = re.compile(r"89[0-9]{16,18}")
KEY_RE = re.compile(r"[0-9a-fA-F]{32}")

ACTIVE = "active"
SUSPENDED = "suspended"
TERMINATED = "terminated"

# Flask endpoint name -> the operation name faults are set on.
OPERATIONS = {
    "network.provision": "provision",
    "network.get_subscriber": "get",
    "network.suspend": "suspend",
    "network.resume": "resume",
    "network.bar": "bar",
    "network.unbar": "unbar",
    "network.swap_sim": "swap_sim",
    "network.terminate": "terminate",
    "network.emit_usage": "emit_usage",
}
ANY_OPERATION = "*"
MAX_LATENCY_MS = 60_000
# The state file: JSON lines (`mvne.infra.journal`); the first format, one JSON document, is still read.
STATE_FORMAT = 2
WHOLE_DOCUMENT_FORMAT = 1

# What a line of this network is provisioned with, and may have barred (MMS travels with data, as on most
# networks; usage files still meter it apart).
LINE_SERVICES = ("data", "voice", "sms")


class SimulatorError(Exception):
    """An error answered as `{"error": {"code", "message", "fields"}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


@dataclass
class Subscriber:
    """A line on the host network, keyed by IMSI; Ki and OPc are kept but never answered."""

    imsi: str
    msisdn: str
    iccid: str
    ki: str
    opc: str
    services: list[str]
    state: str = ACTIVE
    barred: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    terminated_at: str | None = None
    replaces: str | None = None
    replaced_by: str | None = None

    def public(self) -> dict[str, Any]:
        """The subscriber as the API answers it."""
        return {
            "imsi": self.imsi,
            "msisdn": self.msisdn,
            "iccid": self.iccid,
            "state": self.state,
            "services": list(self.services),
            "barred": list(self.barred),
            "active_services": [s for s in self.services if s not in self.barred] if self.state == ACTIVE else [],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "terminated_at": self.terminated_at,
            "replaces": self.replaces,
            "replaced_by": self.replaced_by,
        }


@dataclass
class Fault:
    """The next `remaining` calls of `operation` answer `status`, before or after making the change."""

    operation: str
    status: int
    remaining: int
    when: str = "before"


class NetworkState:
    """Subscribers, faults and latency of one simulated network, behind one lock."""

    def __init__(self, network_name: str, state_path: Path | None, storage: Storage | None = None) -> None:
        self.network_name = network_name
        self.state_path = state_path
        self.storage = storage
        self.lock = threading.RLock()
        self.subscribers: dict[str, Subscriber] = {}
        self.faults: list[Fault] = []
        self.latency_ms = 0
        self.journal = JournalFile(state_path or Path(os.devnull), format_version=STATE_FORMAT)
        if state_path is not None and state_path.exists():
            self._load(state_path)

    def _load(self, path: Path) -> None:
        try:
            try:
                _, entries = self.journal.read()
                for entry in entries:
                    if "subscriber" in entry:
                        item = entry["subscriber"]
                        self.subscribers[item["imsi"]] = Subscriber(**item)
                    elif entry.get("reset"):
                        self.subscribers.clear()
            except ValueError:
                if not self._load_whole_document(path):
                    raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"network simulator state {str(path)!r} cannot be read: {exc}") from exc

    def _load_whole_document(self, path: Path) -> bool:
        """A state file of the first format (one JSON document): loaded, then rewritten in the current one."""
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("format") != WHOLE_DOCUMENT_FORMAT:
            return False
        self.subscribers = {item["imsi"]: Subscriber(**item) for item in document["subscribers"]}
        self._rewrite()
        return True

    def _rewrite(self) -> None:
        self.journal.rewrite(
            {"network": self.network_name}, ({"subscriber": asdict(s)} for s in self.subscribers.values())
        )

    def save(self, *changed: Subscriber, reset: bool = False) -> None:
        """Append the changed subscribers (or a reset) to `state_path`, if there is one; call with the lock held.

        One line per change, so a call costs the same however many subscribers the network holds; the file is
        rewritten once its superseded lines outnumber the live ones.
        """
        if self.state_path is None:
            return
        if not self.journal.exists():
            self._rewrite()
            return
        entries: list[dict[str, Any]] = [{"reset": True}] if reset else []
        entries.extend({"subscriber": asdict(s)} for s in changed)
        self.journal.append(entries)
        if self.journal.grown(len(self.subscribers)):
            self._rewrite()

    def live_by(self, attribute: str, value: str) -> Subscriber | None:
        """The subscriber not terminated whose `attribute` (msisdn, iccid) is `value`."""
        for subscriber in self.subscribers.values():
            if subscriber.state != TERMINATED and getattr(subscriber, attribute) == value:
                return subscriber
        return None

    def take_fault(self, operation: str) -> Fault | None:
        """Consume one call of the first fault set on `operation` (or on any operation)."""
        with self.lock:
            for fault in self.faults:
                if fault.operation in (operation, ANY_OPERATION):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_object() -> dict[str, Any]:
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SimulatorError(400, "invalid_json", "the request body must be a JSON object")
    return body


def _match(body: dict[str, Any], name: str, pattern: re.Pattern[str], rule: str, fields: dict[str, str]) -> str:
    value = body.get(name)
    if value is None:
        fields[name] = "required"
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        fields[name] = rule
        return ""
    return value


def _sim_fields(body: dict[str, Any], fields: dict[str, str]) -> tuple[str, str, str, str]:
    imsi = _match(body, "imsi", IMSI_RE, "6 to 15 digits", fields)
    iccid = _match(body, "iccid", ICCID_RE, "18 to 20 digits starting with 89", fields)
    ki = _match(body, "ki", KEY_RE, "32 hexadecimal characters", fields).lower()
    opc = _match(body, "opc", KEY_RE, "32 hexadecimal characters", fields).lower()
    return imsi, iccid, ki, opc


def _services(value: Any, name: str, fields: dict[str, str], *, default: list[str] | None) -> list[str]:
    if value is None and default is not None:
        return list(default)
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        fields[name] = f"a non-empty list of {', '.join(LINE_SERVICES)}"
        return []
    unknown = sorted({s for s in value if s not in LINE_SERVICES})
    if unknown:
        fields[name] = f"unknown services {', '.join(unknown)}; expected {', '.join(LINE_SERVICES)}"
        return []
    return [s for s in LINE_SERVICES if s in value]


def _raise_if(fields: dict[str, str]) -> None:
    if fields:
        raise SimulatorError(422, "validation_failed", "some fields are invalid", fields)


def _error_response(status: int, code: str, message: str, fields: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    if status in (429, 503):
        response.headers["Retry-After"] = "1"
    return response


def build_usage_records(
    lines: list[tuple[str, str]],
    *,
    data_bytes: int = 0,
    voice_seconds: int = 0,
    sms: int = 0,
    mms: int = 0,
    start: datetime,
    records_per_service: int = 3,
    interval: timedelta = timedelta(hours=1),
) -> list[UsageFileRecord]:
    """Usage of each `(msisdn, imsi)` line: every total split into up to `records_per_service` records.

    The parts sum exactly to the total; record i of a service starts `i * interval` after `start`.
    """
    if records_per_service < 1:
        raise ValueError("records_per_service must be at least 1")
    totals = {"data": data_bytes, "voice": voice_seconds, "sms": sms, "mms": mms}
    records: list[UsageFileRecord] = []
    for msisdn, imsi in lines:
        for offset, service in enumerate(SERVICES):
            total = totals[service]
            if total < 0:
                raise ValueError(f"{service} total must be >= 0")
            parts = min(records_per_service, total)
            if parts == 0:
                continue
            base, extra = divmod(total, parts)
            for index in range(parts):
                # Services start a second apart so one line's records do not share a timestamp.
                started_at = start + index * interval + timedelta(seconds=offset)
                quantity = base + (1 if index < extra else 0)
                records.append(
                    UsageFileRecord(msisdn=msisdn, imsi=imsi, service=service, started_at=started_at, quantity=quantity)
                )
    return records


def emit_usage_file(storage: Storage, network_name: str, records: list[UsageFileRecord]) -> str:
    """Write `records` as one new usage file of `network_name` into `storage`; return its key.

    Records without a record_id get `<network>-<file stamp>-<line>`; given ids are kept as they are
    (so a test can replay a record the platform has already seen).
    """
    key = new_usage_file_key(network_name)
    stamp = key.rsplit("/", 1)[1].removesuffix(".csv")
    numbered = [
        record if record.record_id else replace(record, record_id=f"{network_name}-{stamp}-{line}")
        for line, record in enumerate(records, start=1)
    ]
    storage.put(key, write_usage_file(numbered), content_type="text/csv")
    return key


def create_network_simulator(
    *, storage: Storage | None = None, state_path: Path | None = None, network_name: str = "simnet"
) -> flask.Flask:
    """A Flask app simulating a host network's provisioning API and its usage files."""
    if not NETWORK_NAME_RE.fullmatch(network_name):
        raise ValueError(f"network name {network_name!r}: expected lowercase letters, digits and '-'")
    app = flask.Flask(f"mvne-network-simulator-{network_name}")
    app.extensions[_EXTENSION] = NetworkState(network_name, state_path, storage)
    app.register_blueprint(_routes)
    app.register_error_handler(SimulatorError, _simulator_error)
    app.register_error_handler(HTTPException, _http_error)
    app.before_request(_latency_and_faults)
    app.after_request(_fault_after_change)
    return app


_EXTENSION = "network_simulator"
_routes = flask.Blueprint("network", __name__)


def _state() -> NetworkState:
    state: NetworkState = flask.current_app.extensions[_EXTENSION]
    return state


def _simulator_error(exc: SimulatorError) -> flask.Response:
    return _error_response(exc.status, exc.code, exc.message, exc.fields)


def _http_error(exc: HTTPException) -> flask.Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    return _error_response(exc.code or 500, code, exc.description or code)


def _latency_and_faults() -> flask.Response | None:
    operation = OPERATIONS.get(flask.request.endpoint or "")
    if operation is None:
        return None
    state = _state()
    if state.latency_ms:
        time.sleep(state.latency_ms / 1000)
    fault = state.take_fault(operation)
    if fault is None:
        return None
    if fault.when == "after":
        flask.g.after_fault = fault
        return None
    return _fault_response(fault)


def _fault_after_change(response: flask.Response) -> flask.Response:
    fault = flask.g.pop("after_fault", None)
    return _fault_response(fault) if fault is not None else response


def _fault_response(fault: Fault) -> flask.Response:
    message = f"injected fault on {fault.operation} ({fault.when} the change)"
    return _error_response(fault.status, "injected_fault", message)


def _subscriber(state: NetworkState, imsi: str) -> Subscriber:
    subscriber = state.subscribers.get(imsi)
    if subscriber is None:
        raise SimulatorError(404, "subscriber_not_found", f"no subscriber with IMSI {imsi}")
    return subscriber


def _live(state: NetworkState, imsi: str, action: str) -> Subscriber:
    subscriber = _subscriber(state, imsi)
    if subscriber.state == TERMINATED:
        raise SimulatorError(409, "invalid_transition", f"cannot {action} a terminated subscriber")
    return subscriber


def _changed(state: NetworkState, subscriber: Subscriber) -> flask.Response:
    subscriber.updated_at = _now()
    state.save(subscriber)
    return flask.jsonify(subscriber.public())


@_routes.post("/subscribers")
def provision() -> tuple[flask.Response, int]:
    """Create a subscriber (201), or answer the same one again for the same request (200)."""
    body = _json_object()
    fields: dict[str, str] = {}
    imsi, iccid, ki, opc = _sim_fields(body, fields)
    msisdn = _match(body, "msisdn", MSISDN_RE, "E.164 with a leading '+', 7 to 15 digits", fields)
    services = _services(body.get("services"), "services", fields, default=list(LINE_SERVICES))
    _raise_if(fields)
    if is_test_msisdn(msisdn):
        raise SimulatorError(
            403,
            "test_msisdn_refused",
            f"MSISDN {msisdn} is a sandbox test number: this network refuses to provision it",
        )
    state = _state()
    with state.lock:
        existing = state.subscribers.get(imsi)
        if existing is not None:
            if existing.state == TERMINATED:
                raise SimulatorError(409, "imsi_terminated", f"IMSI {imsi} was terminated; it is not reused")
            if (existing.msisdn, existing.iccid, existing.ki, existing.opc, existing.services) == (
                msisdn,
                iccid,
                ki,
                opc,
                services,
            ):
                return flask.jsonify(existing.public()), 200
            raise SimulatorError(409, "imsi_in_use", f"IMSI {imsi} is provisioned with other values")
        if state.live_by("msisdn", msisdn) is not None:
            raise SimulatorError(409, "msisdn_in_use", f"MSISDN {msisdn} belongs to another IMSI")
        if state.live_by("iccid", iccid) is not None:
            raise SimulatorError(409, "iccid_in_use", f"ICCID {iccid} belongs to another IMSI")
        now = _now()
        subscriber = Subscriber(
            imsi=imsi,
            msisdn=msisdn,
            iccid=iccid,
            ki=ki,
            opc=opc,
            services=services,
            created_at=now,
            updated_at=now,
        )
        state.subscribers[imsi] = subscriber
        state.save(subscriber)
        response = flask.jsonify(subscriber.public())
        response.headers["Location"] = flask.url_for("network.get_subscriber", imsi=imsi)
        return response, 201


@_routes.get("/subscribers/<imsi>")
def get_subscriber(imsi: str) -> flask.Response:
    """The subscriber, terminated ones included; never its Ki or OPc."""
    state = _state()
    with state.lock:
        return flask.jsonify(_subscriber(state, imsi).public())


@_routes.post("/subscribers/<imsi>/suspend")
def suspend(imsi: str) -> flask.Response:
    """Suspend an active line (a suspended one stays as it is)."""
    state = _state()
    with state.lock:
        subscriber = _live(state, imsi, "suspend")
        if subscriber.state == SUSPENDED:
            return flask.jsonify(subscriber.public())
        subscriber.state = SUSPENDED
        return _changed(state, subscriber)


@_routes.post("/subscribers/<imsi>/resume")
def resume(imsi: str) -> flask.Response:
    """Resume a suspended line (an active one stays as it is)."""
    state = _state()
    with state.lock:
        subscriber = _live(state, imsi, "resume")
        if subscriber.state == ACTIVE:
            return flask.jsonify(subscriber.public())
        subscriber.state = ACTIVE
        return _changed(state, subscriber)


def _barring(state: NetworkState, imsi: str, action: str) -> tuple[Subscriber, list[str]]:
    body = _json_object()
    fields: dict[str, str] = {}
    services = _services(body.get("services"), "services", fields, default=None)
    _raise_if(fields)
    subscriber = _live(state, imsi, action)
    missing = [s for s in services if s not in subscriber.services]
    if missing:
        fields["services"] = f"not provisioned on this line: {', '.join(missing)}"
    _raise_if(fields)
    return subscriber, services


@_routes.post("/subscribers/<imsi>/bar")
def bar(imsi: str) -> flask.Response:
    """Bar some of the line's services."""
    state = _state()
    with state.lock:
        subscriber, services = _barring(state, imsi, "bar")
        barred = [s for s in LINE_SERVICES if s in subscriber.barred or s in services]
        if barred == subscriber.barred:
            return flask.jsonify(subscriber.public())
        subscriber.barred = barred
        return _changed(state, subscriber)


@_routes.post("/subscribers/<imsi>/unbar")
def unbar(imsi: str) -> flask.Response:
    """Lift the barring of some of the line's services."""
    state = _state()
    with state.lock:
        subscriber, services = _barring(state, imsi, "unbar")
        barred = [s for s in subscriber.barred if s not in services]
        if barred == subscriber.barred:
            return flask.jsonify(subscriber.public())
        subscriber.barred = barred
        return _changed(state, subscriber)


@_routes.post("/subscribers/<imsi>/swap-sim")
def swap_sim(imsi: str) -> flask.Response:
    """Move the line (MSISDN, state, services, barring) to a new SIM; the old IMSI ends terminated."""
    body = _json_object()
    fields: dict[str, str] = {}
    new_imsi, iccid, ki, opc = _sim_fields(body, fields)
    if new_imsi and new_imsi == imsi:
        fields["imsi"] = "must differ from the current IMSI"
    _raise_if(fields)
    state = _state()
    with state.lock:
        old = _subscriber(state, imsi)
        if old.state == TERMINATED:
            moved = state.subscribers.get(old.replaced_by or "")
            # The same swap again (a retry whose first answer was lost) gets the same answer.
            if (
                moved is not None
                and moved.imsi == new_imsi
                and (moved.iccid, moved.ki, moved.opc)
                == (
                    iccid,
                    ki,
                    opc,
                )
            ):
                return flask.jsonify(moved.public())
            raise SimulatorError(409, "invalid_transition", "cannot swap the SIM of a terminated subscriber")
        if new_imsi in state.subscribers:
            raise SimulatorError(409, "imsi_in_use", f"IMSI {new_imsi} is already provisioned")
        holder = state.live_by("iccid", iccid)
        if holder is not None and holder is not old:
            raise SimulatorError(409, "iccid_in_use", f"ICCID {iccid} belongs to another IMSI")
        now = _now()
        new = replace(
            old, imsi=new_imsi, iccid=iccid, ki=ki, opc=opc, created_at=now, updated_at=now, replaces=old.imsi
        )
        new.services, new.barred = list(old.services), list(old.barred)
        old.state, old.terminated_at, old.updated_at, old.replaced_by = TERMINATED, now, now, new_imsi
        state.subscribers[new_imsi] = new
        state.save(old, new)
        return flask.jsonify(new.public())


@_routes.delete("/subscribers/<imsi>")
def terminate(imsi: str) -> flask.Response:
    """Terminate the line; its MSISDN and ICCID become free (a terminated one stays as it is)."""
    state = _state()
    with state.lock:
        subscriber = _subscriber(state, imsi)
        if subscriber.state == TERMINATED:
            return flask.jsonify(subscriber.public())
        subscriber.state = TERMINATED
        subscriber.terminated_at = _now()
        return _changed(state, subscriber)


@_routes.post("/usage/emit")
def emit_usage() -> tuple[flask.Response, int]:
    """Write one usage file, from explicit `records` or from totals per MSISDN."""
    state = _state()
    if state.storage is None:
        raise SimulatorError(503, "storage_not_configured", "this simulator has no storage for usage files")
    body = _json_object()
    with state.lock:
        explicit = "records" in body
        records = _explicit_records(state, body["records"]) if explicit else _generated_records(state, body)
    key = emit_usage_file(state.storage, state.network_name, records)
    return flask.jsonify({"key": key, "records": len(records)}), 201


@_routes.get("/healthz")
def healthz() -> flask.Response:
    """Liveness, for the platform's readiness checks and for humans."""
    return flask.jsonify({"status": "ok", "network": _state().network_name})


@_routes.post("/sim-admin/faults")
def add_fault() -> tuple[flask.Response, int]:
    """Make the next `count` calls of `operation` (or `*`) answer `status`."""
    body = _json_object()
    fields: dict[str, str] = {}
    operation = str(body.get("operation", "")).replace("-", "_")
    if operation not in {*OPERATIONS.values(), ANY_OPERATION}:
        fields["operation"] = f"one of {', '.join(sorted(OPERATIONS.values()))} or '*'"
    status = _int_field(body, "status", fields, default=None, low=400, high=599)
    count = _int_field(body, "count", fields, default=1, low=1, high=1_000_000)
    when = body.get("when", "before")
    if when not in ("before", "after"):
        fields["when"] = "'before' (nothing changes) or 'after' (the change is made, the answer lost)"
    _raise_if(fields)
    state = _state()
    with state.lock:
        state.faults.append(Fault(operation=operation, status=status, remaining=count, when=when))
        return flask.jsonify({"faults": [asdict(f) for f in state.faults]}), 201


@_routes.get("/sim-admin/faults")
def list_faults() -> flask.Response:
    """The faults still pending."""
    state = _state()
    with state.lock:
        return flask.jsonify({"faults": [asdict(f) for f in state.faults]})


@_routes.delete("/sim-admin/faults")
def clear_faults() -> flask.Response:
    """Drop every pending fault."""
    state = _state()
    with state.lock:
        state.faults.clear()
        return flask.jsonify({"faults": []})


@_routes.post("/sim-admin/latency")
def set_latency() -> flask.Response:
    """Delay every provisioning and usage call by `ms` milliseconds."""
    fields: dict[str, str] = {}
    ms = _int_field(_json_object(), "ms", fields, default=None, low=0, high=MAX_LATENCY_MS)
    _raise_if(fields)
    _state().latency_ms = ms
    return flask.jsonify({"ms": ms})


@_routes.post("/sim-admin/reset")
def reset() -> flask.Response:
    """Forget every subscriber, fault and latency."""
    state = _state()
    with state.lock:
        state.subscribers.clear()
        state.faults.clear()
        state.latency_ms = 0
        state.save(reset=True)
        return flask.jsonify({"status": "reset"})


def _int_field(
    body: dict[str, Any], name: str, fields: dict[str, str], *, default: int | None, low: int, high: int
) -> int:
    value = body.get(name, default)
    if value is None:
        fields[name] = "required"
        return low
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fields[name] = f"a whole number from {low} to {high}"
        return low
    return value


def _line_for(state: NetworkState, msisdn: Any) -> Subscriber | None:
    if not isinstance(msisdn, str):
        return None
    return state.live_by("msisdn", msisdn)


def _timestamp_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _explicit_records(state: NetworkState, raw: Any) -> list[UsageFileRecord]:
    if not isinstance(raw, list) or not raw:
        raise SimulatorError(422, "validation_failed", "some fields are invalid", {"records": "a non-empty list"})
    fields: dict[str, str] = {}
    records: list[UsageFileRecord] = []
    seen_ids: set[str] = set()
    for index, item in enumerate(raw):
        where = f"records[{index}]"
        if not isinstance(item, dict):
            fields[where] = "an object"
            continue
        line = _line_for(state, item.get("msisdn"))
        if line is None:
            fields[f"{where}.msisdn"] = "not a subscriber of this network, or terminated"
            continue
        moment = _timestamp_or_none(item.get("started_at"))
        if moment is None:
            fields[f"{where}.started_at"] = "an ISO 8601 datetime with a timezone"
            continue
        try:
            record = UsageFileRecord(
                msisdn=line.msisdn,
                imsi=item.get("imsi") or line.imsi,
                service=item.get("service"),  # type: ignore[arg-type]  # validated by the dataclass
                started_at=moment,
                quantity=item.get("quantity"),  # type: ignore[arg-type]  # validated by the dataclass
                unit=item.get("unit") or "",
                record_id=item.get("record_id") or "",
            )
        except (ValueError, TypeError) as exc:
            fields[where] = str(exc)
            continue
        if record.record_id:
            if record.record_id in seen_ids:
                fields[f"{where}.record_id"] = "appears twice in this request"
            seen_ids.add(record.record_id)
        records.append(record)
    _raise_if(fields)
    return records


def _whole(value: Any, scale: int, name: str, fields: dict[str, str]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        fields[name] = "a number >= 0"
        return 0
    try:
        amount = Decimal(str(value)) * scale
    except InvalidOperation:
        fields[name] = "a number >= 0"
        return 0
    if not amount.is_finite() or amount < 0:
        fields[name] = "a number >= 0"
        return 0
    return int(amount)


def _generated_records(state: NetworkState, body: dict[str, Any]) -> list[UsageFileRecord]:
    fields: dict[str, str] = {}
    msisdns = body.get("msisdns")
    lines: list[tuple[str, str]] = []
    created: list[datetime] = []
    if not isinstance(msisdns, list) or not msisdns:
        fields["msisdns"] = "a non-empty list of MSISDNs (or give 'records')"
    else:
        unknown = []
        for msisdn in msisdns:
            line = _line_for(state, msisdn)
            if line is None:
                unknown.append(str(msisdn))
            else:
                lines.append((line.msisdn, line.imsi))
                created.append(parse_timestamp(line.created_at))
        if unknown:
            fields["msisdns"] = f"not subscribers of this network, or terminated: {', '.join(unknown)}"
    data_bytes = _whole(body.get("data_mb"), 1_000_000, "data_mb", fields)
    voice_seconds = _whole(body.get("voice_minutes"), 60, "voice_minutes", fields)
    sms = _int_field(body, "sms", fields, default=0, low=0, high=10**9)
    mms = _int_field(body, "mms", fields, default=0, low=0, high=10**9)
    per_service = _int_field(body, "records_per_service", fields, default=3, low=1, high=1000)
    interval_minutes = _int_field(body, "interval_minutes", fields, default=60, low=0, high=60 * 24 * 31)
    interval = timedelta(minutes=interval_minutes)
    # Without a start, usage lies between the lines' arrival on the network (at most a day ago) and now,
    # as a network's files describe usage already done by lines it serves.
    now = datetime.now(UTC).replace(microsecond=0)
    start = max([now - timedelta(days=1), *(moment + timedelta(seconds=1) for moment in created)])
    if "interval_minutes" not in body and "start" not in body:
        interval = max((now - start - timedelta(seconds=len(SERVICES))) / per_service, timedelta(0))
    if "start" in body:
        parsed = _timestamp_or_none(body["start"])
        if parsed is None:
            fields["start"] = "an ISO 8601 datetime with a timezone"
        else:
            start = parsed
    if not fields and data_bytes == voice_seconds == sms == mms == 0:
        fields["data_mb"] = "give at least one of data_mb, voice_minutes, sms, mms above 0"
    _raise_if(fields)
    return build_usage_records(
        lines,
        data_bytes=data_bytes,
        voice_seconds=voice_seconds,
        sms=sms,
        mms=mms,
        start=start,
        records_per_service=per_service,
        interval=interval,
    )
