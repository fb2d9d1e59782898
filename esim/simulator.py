"""SM-DP+ simulator speaking GSMA SGP.22 ES2+ (DownloadOrder, ConfirmOrder, CancelOrder, ReleaseProfile).

It follows the spec's fields, status codes and profile states (reference/telecom-standards.md §1) so
that the operator side can be exercised over real HTTP. Simulator-only controls live under
`/sim-admin/`: inventory, a simulated device download, faults, latency and configuration.

A profile bound to the sandbox's failing test device (`TEST_DEVICE_EID_INSTALL_FAILS`, docs/sandbox.md)
always fails to install when the device downloads it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pathlib
import re
import secrets
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import flask
import httpx

from mvne.esim.adapters import ADMIN_PROTOCOL, ES2PLUS_PATH
from mvne.esim.identifiers import (
    TEST_DEVICE_EID_INSTALL_FAILS,
    is_valid_eid,
    is_valid_fqdn,
    is_valid_iccid,
    is_valid_matching_id,
    make_eid,
    new_matching_id,
    normalize_iccid,
)
from mvne.infra.journal import JournalFile

log = logging.getLogger(__name__)

FUNCTIONS = ("downloadOrder", "confirmOrder", "cancelOrder", "releaseProfile")
# The state file: JSON lines (`mvne.infra.journal`); the first format, one JSON document, is still read.
STATE_FILE_FORMAT = 2
WHOLE_DOCUMENT_FORMAT = 1
EXTENSION_KEY = "mvne_smdp_simulator"
# Enough to cover any realistic retry window without letting the state file grow without bound.
MAX_REMEMBERED_CALLS = 10_000
NOTIFICATION_TIMEOUT_SECONDS = 5.0
_V2_PROTOCOL = re.compile(r"gsma/rsp/v2\.[0-9]+\.[0-9]+")
_CODE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_IMSI = re.compile(r"[0-9]{6,15}")
# Transient failures mean the function did not run, so a retry with the same call id must run it.
_TRANSIENT_CODES = {("1.2", "4.4"), ("1.2", "4.2")}


class ProfileState(StrEnum):
    """Profile states at the SM-DP+ (SGP.22 3.1.6)."""

    AVAILABLE = "Available"
    ALLOCATED = "Allocated"
    LINKED = "Linked"
    CONFIRMED = "Confirmed"
    RELEASED = "Released"
    DOWNLOADED = "Downloaded"
    INSTALLED = "Installed"
    ERROR = "Error"
    UNAVAILABLE = "Unavailable"


_ORDERED = (ProfileState.ALLOCATED, ProfileState.LINKED)
_CANCELLABLE = (
    ProfileState.ALLOCATED,
    ProfileState.LINKED,
    ProfileState.CONFIRMED,
    ProfileState.RELEASED,
    ProfileState.ERROR,
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Profile:
    iccid: str
    imsi: str
    profile_type: str
    state: ProfileState = ProfileState.AVAILABLE
    eid: str | None = None
    matching_id: str | None = None
    confirmation_code_sha256: str | None = None
    smds_address: str | None = None
    requester: str | None = None
    updated_at: str = ""

    def reset(self, state: ProfileState) -> None:
        self.state = state
        self.eid = None
        self.matching_id = None
        self.confirmation_code_sha256 = None
        self.smds_address = None
        self.requester = None

    def view(self) -> dict[str, Any]:
        return {
            "iccid": self.iccid,
            "imsi": self.imsi,
            "profile_type": self.profile_type,
            "state": str(self.state),
            "eid": self.eid,
            "matching_id": self.matching_id,
            "confirmation_code_required": self.confirmation_code_sha256 is not None,
            "smds_address": self.smds_address,
            "requester": self.requester,
            "updated_at": self.updated_at,
        }


@dataclass
class _Fault:
    subject_code: str | None
    reason_code: str | None
    message: str
    http_status: int | None
    remaining: int


class _Es2Failure(Exception):
    def __init__(self, subject_code: str, reason_code: str, message: str) -> None:
        super().__init__(f"{subject_code}/{reason_code} {message}")
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(field: str, why: str) -> _Es2Failure:
    return _Es2Failure("1.6", "2.1", f"{field} {why}")


def _missing(field: str) -> _Es2Failure:
    return _Es2Failure("1.6", "2.2", f"{field} is missing")


def _opt_string(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value


def _iccid_field(body: dict[str, Any], *, required: bool) -> str | None:
    value = _opt_string(body, "iccid")
    if value is None:
        if required:
            raise _missing("iccid")
        return None
    if not is_valid_iccid(value):
        raise _invalid("iccid", "must be 19 digits plus an optional digit or F, start with 89 and pass Luhn")
    return value


def _eid_field(body: dict[str, Any]) -> str | None:
    value = _opt_string(body, "eid")
    if value is not None and not is_valid_eid(value):
        raise _invalid("eid", "must be 32 digits starting with 89 with valid check digits")
    return value


def _matching_id_field(body: dict[str, Any]) -> str | None:
    value = _opt_string(body, "matchingId")
    if value is not None and not is_valid_matching_id(value):
        raise _invalid("matchingId", "may only contain 0-9, A-Z and '-'")
    return value


def _profile_entry(profile: _Profile) -> dict[str, Any]:
    return {**asdict(profile), "state": str(profile.state)}


def _fingerprint(function: str, body: dict[str, Any]) -> str:
    fields = {key: value for key, value in body.items() if key != "header"}
    canonical = json.dumps([function, fields], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class SmdpSimulatorState:
    """Inventory, remembered calls and test knobs of one simulator, guarded by one lock."""

    def __init__(
        self,
        smdp_address: str,
        state_path: pathlib.Path | None,
        notification_url: str | None,
        notify_tls: bool | ssl.SSLContext = True,
    ):
        self.smdp_address = smdp_address
        self.state_path = state_path
        self.notification_url = notification_url
        # TLS of the notifications we send: our client certificate and the operator's CA (mutual TLS).
        self.notify_tls = notify_tls
        self.lock = threading.Lock()
        self.profiles: dict[str, _Profile] = {}
        self.calls: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.faults: dict[str, list[_Fault]] = {name: [] for name in FUNCTIONS}
        self.latency_ms = 0
        # What the call under way changed, written by the next `save`.
        self._touched: dict[str, _Profile] = {}
        self._new_calls: list[dict[str, Any]] = []
        self.journal = JournalFile(state_path or pathlib.Path(os.devnull), format_version=STATE_FILE_FORMAT)
        self.handlers: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "downloadOrder": self.download_order,
            "confirmOrder": self.confirm_order,
            "cancelOrder": self.cancel_order,
            "releaseProfile": self.release_profile,
        }
        if state_path is not None and state_path.exists():
            self._load(state_path)

    def _load(self, path: pathlib.Path) -> None:
        try:
            try:
                _, entries = self.journal.read()
                for entry in entries:
                    if "profile" in entry:
                        self._put_profile(entry["profile"])
                    elif "call" in entry:
                        self.remember(entry["call"]["key"], entry["call"])
            except ValueError:
                if not self._load_whole_document(path):
                    raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot load SM-DP+ simulator state from {path}: {exc}") from exc
        self._touched.clear()
        self._new_calls.clear()

    def _put_profile(self, raw: dict[str, Any]) -> None:
        profile = _Profile(**{**raw, "state": ProfileState(raw["state"])})
        self.profiles[profile.iccid] = profile

    def _load_whole_document(self, path: pathlib.Path) -> bool:
        """A state file of the first format (the whole state in one JSON document): loaded, then rewritten."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != WHOLE_DOCUMENT_FORMAT:
            return False
        self.profiles.clear()
        self.calls.clear()
        for raw in data["profiles"]:
            self._put_profile(raw)
        for call in data["calls"]:
            self.remember(call["key"], call)
        self._rewrite()
        return True

    def _entries(self) -> Iterator[dict[str, Any]]:
        for profile in self.profiles.values():
            yield {"profile": _profile_entry(profile)}
        for call in self.calls.values():
            yield {"call": call}

    def _rewrite(self) -> None:
        self.journal.rewrite({"smdp_address": self.smdp_address}, self._entries())

    def touched(self, profile: _Profile) -> _Profile:
        """Mark a profile as changed by the call under way: the next `save` writes it. Call with the lock held."""
        self._touched[profile.iccid] = profile
        return profile

    def save(self) -> None:
        """Append the profiles and calls changed since the last save; call with the lock held.

        One line per change, so a call costs the same whatever the inventory holds; the file is rewritten
        once the superseded lines outnumber the live ones.
        """
        if self.state_path is None:
            self._touched.clear()
            self._new_calls.clear()
            return
        entries = [{"profile": _profile_entry(p)} for p in self._touched.values()]
        entries.extend({"call": call} for call in self._new_calls)
        self._touched.clear()
        self._new_calls.clear()
        if not self.journal.exists():
            self._rewrite()
            return
        self.journal.append(entries)
        if self.journal.grown(len(self.profiles) + len(self.calls)):
            self._rewrite()

    def remember(self, key: str, record: dict[str, Any]) -> None:
        """Keep a call's response for retries; call with the lock held."""
        self.calls[key] = record
        self._new_calls.append(record)
        while len(self.calls) > MAX_REMEMBERED_CALLS:
            self.calls.popitem(last=False)

    def take_fault(self, function: str) -> _Fault | None:
        """Consume one pending fault for `function`; call with the lock held."""
        queue = self.faults[function]
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    def profile(self, iccid: str) -> _Profile:
        """Return the profile with this ICCID or fail with 8.2.1/3.9."""
        profile = self.profiles.get(normalize_iccid(iccid))
        if profile is None:
            raise _Es2Failure("8.2.1", "3.9", f"ICCID {iccid} is unknown")
        return self.touched(profile)

    def owned_profile(self, iccid: str, requester: str) -> _Profile:
        """Return the profile, failing with 8.2.1/1.2 when another operator ordered it."""
        profile = self.profile(iccid)
        if profile.requester is not None and profile.requester != requester:
            raise _Es2Failure("8.2.1", "1.2", f"profile {iccid} is ordered by another function requester")
        return profile

    def call(
        self, function: str, requester: str, call_id: str, body: dict[str, Any]
    ) -> tuple[_Fault | None, dict[str, Any]]:
        """Run one ES2+ call (or replay it) and return the fault applied, if any, and the response body."""
        key = json.dumps([requester, call_id])
        fingerprint = _fingerprint(function, body)
        with self.lock:
            seen = self.calls.get(key)
            if seen is not None:
                if seen["fingerprint"] != fingerprint:
                    reused = _invalid("header.functionCallIdentifier", "was already used for another request")
                    return None, {"header": _status_header(reused)}
                log.info("ES2+ %s retry of call %s answered from memory", function, call_id)
                return None, seen["response"]
            fault = self.take_fault(function)
            if fault is not None and fault.http_status is not None:
                return fault, {}
            output: dict[str, Any] = {}
            failure: _Es2Failure | None = None
            try:
                if fault is not None:
                    raise _Es2Failure(fault.subject_code or "1.2", fault.reason_code or "4.2", fault.message)
                output = self.handlers[function](requester, body)
            except _Es2Failure as exc:
                failure = exc
            payload = {"header": _status_header(failure), **output}
            if failure is None or (failure.subject_code, failure.reason_code) not in _TRANSIENT_CODES:
                self.remember(key, {"key": key, "function": function, "fingerprint": fingerprint, "response": payload})
            self.save()
            return fault, payload

    def load_inventory(self, incoming: list[_Profile]) -> tuple[int, int]:
        """Add new profiles; same data again is a no-op, other data for a known ICCID or IMSI is a 409."""
        with self.lock:
            new: dict[str, _Profile] = {}
            imsis = {p.imsi: p.iccid for p in self.profiles.values()}
            unchanged = 0
            for profile in incoming:
                existing = self.profiles.get(profile.iccid) or new.get(profile.iccid)
                if existing is not None:
                    if (existing.imsi, existing.profile_type) != (profile.imsi, profile.profile_type):
                        raise _AdminError(409, f"ICCID {profile.iccid} is already loaded with other data")
                    unchanged += 1
                    continue
                if profile.imsi in imsis:
                    raise _AdminError(409, f"IMSI {profile.imsi} is already on ICCID {imsis[profile.imsi]}")
                imsis[profile.imsi] = profile.iccid
                profile.updated_at = _now()
                new[profile.iccid] = profile
            self.profiles.update(new)
            self._touched.update(new)
            if new:
                self.save()
        return len(new), unchanged

    def admin_profile(self, iccid: str) -> _Profile:
        """Return a profile by normalized ICCID or raise a 404; call with the lock held."""
        profile = self.profiles.get(iccid)
        if profile is None:
            raise _AdminError(404, f"ICCID {iccid} is unknown")
        return self.touched(profile)

    def device_download(self, iccid: str, device_eid: str | None, *, installed: bool) -> dict[str, Any]:
        """Play a device downloading then installing a Released profile, notifying points 3 and 4."""
        with self.lock:
            profile = self.admin_profile(iccid)
            if profile.state != ProfileState.RELEASED:
                raise _AdminError(409, f"profile is {profile.state}; only a Released one can be downloaded")
            if device_eid is not None and profile.eid is not None and device_eid != profile.eid:
                raise _AdminError(409, "the device EID differs from the EID bound to the profile")
            # A real device always authenticates with its EID, so the SM-DP+ learns one here.
            profile.eid = profile.eid or device_eid or make_eid(f"89{secrets.randbelow(10**28):028d}")
            profile.state = ProfileState.DOWNLOADED
            profile.updated_at = _now()
            self.save()
            snapshot = (profile.iccid, profile.eid, profile.profile_type)
            url = self.notification_url
        delivered = [_notify(url, self.smdp_address, snapshot, point=3, failure=None, tls=self.notify_tls)]
        # The sandbox's failing test device fails every installation, whatever the caller asked for.
        installed = installed and snapshot[1] != TEST_DEVICE_EID_INSTALL_FAILS
        failure = None if installed else _Es2Failure("8.2.10", "4.2", "loadBppExecutionError")
        with self.lock:
            self.touched(profile)
            profile.state = ProfileState.INSTALLED if installed else ProfileState.ERROR
            profile.updated_at = _now()
            self.save()
            view = profile.view()
            url = self.notification_url
        delivered.append(_notify(url, self.smdp_address, snapshot, point=4, failure=failure, tls=self.notify_tls))
        return {**view, "notifications_delivered": delivered}

    # ES2+ functions. Each runs with the lock held and returns the output body fields.

    def download_order(self, requester: str, body: dict[str, Any]) -> dict[str, Any]:
        """DownloadOrder: reserve a profile by ICCID or profileType (SGP.22 5.3.1)."""
        iccid = _iccid_field(body, required=False)
        eid = _eid_field(body)
        profile_type = _opt_string(body, "profileType")
        if profile_type == "":
            raise _invalid("profileType", "must not be empty")
        if iccid is None and profile_type is None:
            raise _Es2Failure("1.6", "2.3", "iccid or profileType is required")
        known_types = {p.profile_type for p in self.profiles.values()}
        if iccid is not None:
            profile = self.profile(iccid)
            if profile_type is not None and profile_type not in known_types:
                raise _Es2Failure("8.2.5", "3.9", f"profileType {profile_type} is unknown")
            if profile_type is not None and profile.profile_type != profile_type:
                raise _Es2Failure("8.2.5", "3.8", f"ICCID {iccid} is not of profileType {profile_type}")
            if profile.state != ProfileState.AVAILABLE:
                raise _Es2Failure("8.2.1", "3.3", f"ICCID {iccid} is already in use")
            answer = iccid
        else:
            if profile_type not in known_types:
                raise _Es2Failure("8.2.5", "3.9", f"profileType {profile_type} is unknown")
            candidates = sorted(
                (p for p in self.profiles.values() if p.profile_type == profile_type),
                key=lambda p: p.iccid,
            )
            available = next((p for p in candidates if p.state == ProfileState.AVAILABLE), None)
            if available is None:
                raise _Es2Failure("8.2.5", "3.7", f"no more profiles of profileType {profile_type}")
            profile, answer = self.touched(available), available.iccid
        profile.state = ProfileState.LINKED if eid is not None else ProfileState.ALLOCATED
        profile.eid = eid
        profile.requester = requester
        profile.updated_at = _now()
        return {"iccid": answer}

    def confirm_order(self, requester: str, body: dict[str, Any]) -> dict[str, Any]:
        """ConfirmOrder: bind matchingId, EID and confirmation code; release if asked (SGP.22 5.3.2)."""
        iccid = _iccid_field(body, required=True)
        assert iccid is not None
        if "releaseFlag" not in body or body["releaseFlag"] is None:
            raise _missing("releaseFlag")
        release = body["releaseFlag"]
        if not isinstance(release, bool):
            raise _invalid("releaseFlag", "must be a boolean")
        eid = _eid_field(body)
        matching_id = _matching_id_field(body)
        confirmation_code = _opt_string(body, "confirmationCode")
        if confirmation_code == "":
            raise _invalid("confirmationCode", "must not be empty")
        smds_address = _opt_string(body, "smdsAddress")
        if smds_address is not None and not is_valid_fqdn(smds_address):
            raise _invalid("smdsAddress", "must be an FQDN")
        if smds_address is not None and matching_id == "":
            raise _invalid("matchingId", "must not be empty when smdsAddress is given")
        profile = self.owned_profile(iccid, requester)
        if profile.state not in _ORDERED:
            raise _Es2Failure("8.2.1", "3.5", f"cannot confirm a profile in state {profile.state}")
        if eid is not None and profile.eid is not None and eid != profile.eid:
            raise _Es2Failure("8.1.1", "3.10", "a different EID is already associated with the profile")
        bound_eid = profile.eid or eid
        if bound_eid is None and (smds_address is not None or matching_id == ""):
            raise _Es2Failure("8.1.1", "2.2", "eid is required with an SM-DS or an empty matchingId")
        in_use = {p.matching_id for p in self.profiles.values() if p is not profile and p.matching_id}
        if matching_id is None:
            matching_id = new_matching_id()
            while matching_id in in_use:
                matching_id = new_matching_id()
        elif matching_id in in_use:
            raise _Es2Failure("8.2.6", "3.3", f"matchingId {matching_id} is already in use")
        profile.eid = bound_eid
        profile.matching_id = matching_id
        profile.confirmation_code_sha256 = (
            hashlib.sha256(confirmation_code.encode()).hexdigest() if confirmation_code is not None else None
        )
        profile.smds_address = smds_address
        profile.state = ProfileState.RELEASED if release else ProfileState.CONFIRMED
        profile.updated_at = _now()
        output: dict[str, Any] = {"matchingId": matching_id, "smdpAddress": self.smdp_address}
        if profile.eid is not None:
            output["eid"] = profile.eid
        return output

    def cancel_order(self, requester: str, body: dict[str, Any]) -> dict[str, Any]:
        """CancelOrder: return a not yet downloaded profile to Available or Unavailable (SGP.22 5.3.3)."""
        iccid = _iccid_field(body, required=True)
        assert iccid is not None
        final = _opt_string(body, "finalProfileStatusIndicator")
        if final is None:
            raise _missing("finalProfileStatusIndicator")
        if final not in (ProfileState.AVAILABLE, ProfileState.UNAVAILABLE):
            raise _invalid("finalProfileStatusIndicator", "must be Available or Unavailable")
        eid = _eid_field(body)
        matching_id = _matching_id_field(body)
        profile = self.owned_profile(iccid, requester)
        if profile.state in (ProfileState.DOWNLOADED, ProfileState.INSTALLED):
            raise _Es2Failure("8.2.1", "3.3", f"profile {iccid} is already downloaded")
        if profile.state not in _CANCELLABLE:
            raise _Es2Failure("8.2.1", "3.5", f"cannot cancel a profile in state {profile.state}")
        if profile.eid is not None and eid is None:
            raise _Es2Failure("1.6", "2.3", "eid is required: an EID is associated with the profile")
        if eid != profile.eid:
            raise _Es2Failure("8.2.1", "3.10", "the EID does not match the one associated with the profile")
        if profile.matching_id is not None and matching_id is None:
            raise _Es2Failure("1.6", "2.3", "matchingId is required: one is associated with the profile")
        if matching_id != profile.matching_id:
            raise _Es2Failure("8.2.6", "3.10", "the matchingId does not match the one of the profile")
        if final == ProfileState.AVAILABLE:
            profile.reset(ProfileState.AVAILABLE)
        else:
            # EID and matchingId stay on record so a possibly leaked activation code is never reissued.
            profile.state = ProfileState.UNAVAILABLE
            profile.confirmation_code_sha256 = None
        profile.updated_at = _now()
        return {}

    def release_profile(self, requester: str, body: dict[str, Any]) -> dict[str, Any]:
        """ReleaseProfile: Confirmed -> Released; already Released is a no-op (SGP.22 5.3.4)."""
        iccid = _iccid_field(body, required=True)
        assert iccid is not None
        profile = self.owned_profile(iccid, requester)
        if profile.state == ProfileState.RELEASED:
            return {}
        if profile.state != ProfileState.CONFIRMED:
            raise _Es2Failure("8.2.1", "3.5", f"cannot release a profile in state {profile.state}")
        profile.state = ProfileState.RELEASED
        profile.updated_at = _now()
        return {}


def _status_header(failure: _Es2Failure | None) -> dict[str, Any]:
    if failure is None:
        return {"functionExecutionStatus": {"status": "Executed-Success"}}
    return {
        "functionExecutionStatus": {
            "status": "Failed",
            "statusCodeData": {
                "subjectCode": failure.subject_code,
                "reasonCode": failure.reason_code,
                "message": failure.message,
            },
        }
    }


def _json_response(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    # ES2+ forbids escaping characters that need no escaping (SGP.22 6.5), so no ASCII escaping.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return flask.Response(text, status=status, mimetype="application/json", headers=headers)


def _state() -> SmdpSimulatorState:
    state: SmdpSimulatorState = flask.current_app.extensions[EXTENSION_KEY]
    return state


def _request_header(body: Any) -> tuple[str, str, dict[str, Any]]:
    """Return (functionRequesterIdentifier, functionCallIdentifier, body) or fail with 1.6/2.x."""
    if not isinstance(body, dict):
        raise _Es2Failure("1.3.1", "2.1", "request body must be a JSON object")
    header = body.get("header")
    if not isinstance(header, dict):
        raise _missing("header")
    values = []
    for field in ("functionRequesterIdentifier", "functionCallIdentifier"):
        value = header.get(field)
        if value is None:
            raise _missing(f"header.{field}")
        if not isinstance(value, str) or not value:
            raise _invalid(f"header.{field}", "must be a non-empty string")
        values.append(value)
    return values[0], values[1], body


def _es2plus_call(function: str) -> flask.Response:
    state = _state()
    with state.lock:
        latency_ms = state.latency_ms
    if latency_ms:
        time.sleep(latency_ms / 1000)
    sent_protocol = flask.request.headers.get("X-Admin-Protocol", "")
    headers = {"X-Admin-Protocol": sent_protocol if _V2_PROTOCOL.fullmatch(sent_protocol) else ADMIN_PROTOCOL}
    try:
        requester, call_id, body = _request_header(flask.request.get_json(force=True, silent=True))
    except _Es2Failure as failure:
        return _json_response({"header": _status_header(failure)}, headers=headers)
    fault, payload = state.call(function, requester, call_id, body)
    if fault is not None and fault.http_status is not None:
        return flask.Response(fault.message, status=fault.http_status, mimetype="text/plain")
    execution = payload["header"]["functionExecutionStatus"]
    log.info("ES2+ %s call %s from %s: %s", function, call_id, requester, execution)
    return _json_response(payload, headers=headers)


def _admin_body() -> dict[str, Any]:
    if not flask.request.get_data():
        return {}
    body = flask.request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise _AdminError(400, "request body must be a JSON object")
    return body


def _admin_iccid(value: str) -> str:
    if not is_valid_iccid(value):
        raise _AdminError(400, f"not a valid ICCID: {value}")
    return normalize_iccid(value)


def _parse_inventory(body: dict[str, Any]) -> list[_Profile]:
    rows = body.get("profiles")
    if not isinstance(rows, list):
        raise _AdminError(400, "profiles must be a list")
    parsed: list[_Profile] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _AdminError(400, f"profiles[{index}] must be an object")
        iccid, imsi, profile_type = row.get("iccid"), row.get("imsi"), row.get("profile_type")
        if not isinstance(iccid, str) or not is_valid_iccid(iccid):
            raise _AdminError(400, f"profiles[{index}].iccid is not a valid ICCID")
        if not isinstance(imsi, str) or not _IMSI.fullmatch(imsi):
            raise _AdminError(400, f"profiles[{index}].imsi must be 6 to 15 digits")
        if not isinstance(profile_type, str) or not profile_type:
            raise _AdminError(400, f"profiles[{index}].profile_type must be a non-empty string")
        parsed.append(_Profile(iccid=normalize_iccid(iccid), imsi=imsi, profile_type=profile_type))
    return parsed


def _parse_fault(body: dict[str, Any]) -> tuple[str, _Fault]:
    function = body.get("function")
    if not isinstance(function, str) or function not in FUNCTIONS:
        raise _AdminError(400, f"function must be one of {', '.join(FUNCTIONS)}")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _AdminError(400, "count must be a positive integer")
    http_status = body.get("http_status")
    subject, reason = body.get("subject_code"), body.get("reason_code")
    if http_status is not None:
        if not isinstance(http_status, int) or not 400 <= http_status <= 599:
            raise _AdminError(400, "http_status must be an integer from 400 to 599")
        subject = reason = None
    elif not (isinstance(subject, str) and _CODE.fullmatch(subject)) or not (
        isinstance(reason, str) and _CODE.fullmatch(reason)
    ):
        raise _AdminError(400, "give subject_code and reason_code (e.g. 8.2.5 and 3.7), or http_status")
    message = body.get("message") or "injected fault"
    if not isinstance(message, str):
        raise _AdminError(400, "message must be a string")
    return function, _Fault(subject, reason, message, http_status, count)


_admin = flask.Blueprint("smdp_simulator", __name__)


@_admin.errorhandler(_AdminError)
def _admin_error(exc: _AdminError) -> flask.Response:
    return _json_response({"error": exc.message}, status=exc.status)


@_admin.get("/healthz")
def _healthz() -> flask.Response:
    return _json_response({"status": "ok"})


@_admin.post("/sim-admin/profiles")
def _load_profiles() -> flask.Response:
    loaded, unchanged = _state().load_inventory(_parse_inventory(_admin_body()))
    return _json_response({"loaded": loaded, "unchanged": unchanged})


@_admin.get("/sim-admin/profiles/<iccid>")
def _show_profile(iccid: str) -> flask.Response:
    state = _state()
    with state.lock:
        return _json_response(state.admin_profile(_admin_iccid(iccid)).view())


@_admin.post("/sim-admin/profiles/<iccid>/download")
def _download(iccid: str) -> flask.Response:
    key = _admin_iccid(iccid)
    body = _admin_body()
    device_eid = body.get("eid")
    if device_eid is not None and (not isinstance(device_eid, str) or not is_valid_eid(device_eid)):
        raise _AdminError(400, "eid is not a valid EID")
    outcome = body.get("outcome", "installed")
    if outcome not in ("installed", "install_failed"):
        raise _AdminError(400, "outcome must be installed or install_failed")
    return _json_response(_state().device_download(key, device_eid, installed=outcome == "installed"))


@_admin.post("/sim-admin/faults")
def _add_fault() -> flask.Response:
    function, fault = _parse_fault(_admin_body())
    state = _state()
    with state.lock:
        state.faults[function].append(fault)
        pending = {name: sum(f.remaining for f in queue) for name, queue in state.faults.items()}
    return _json_response({"pending": pending})


@_admin.delete("/sim-admin/faults")
def _clear_faults() -> flask.Response:
    state = _state()
    with state.lock:
        for queue in state.faults.values():
            queue.clear()
    return _json_response({"pending": dict.fromkeys(FUNCTIONS, 0)})


@_admin.post("/sim-admin/latency")
def _set_latency() -> flask.Response:
    ms = _admin_body().get("ms")
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= 60_000:
        raise _AdminError(400, "ms must be an integer from 0 to 60000")
    state = _state()
    with state.lock:
        state.latency_ms = ms
    return _json_response({"ms": ms})


@_admin.post("/sim-admin/config")
def _set_config() -> flask.Response:
    body = _admin_body()
    state = _state()
    if "notification_url" in body:
        url = body["notification_url"]
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise _AdminError(400, "notification_url must be an http(s) URL or null")
        with state.lock:
            state.notification_url = url
    with state.lock:
        config = {"smdp_address": state.smdp_address, "notification_url": state.notification_url}
    return _json_response(config)


for _function in FUNCTIONS:
    _admin.add_url_rule(
        f"{ES2PLUS_PATH}/{_function}",
        endpoint=f"es2plus_{_function}",
        view_func=functools.partial(_es2plus_call, _function),
        methods=["POST"],
    )


def create_smdp_simulator(
    *,
    smdp_address: str,
    state_path: pathlib.Path | None = None,
    notification_url: str | None = None,
    notify_tls: bool | ssl.SSLContext = True,
) -> flask.Flask:
    """Build the SM-DP+ simulator app; routes are relative so it can be mounted under any prefix.

    `notify_tls` is what its notifications are sent with over HTTPS: an SSLContext holding its client
    certificate and the CA of the operator's server (see `mvne.esim.tls.client_tls`), or httpx's `verify`.
    """
    if not is_valid_fqdn(smdp_address):
        raise ValueError(f"smdp_address must be an FQDN, got {smdp_address!r}")
    app = flask.Flask(__name__)
    app.extensions[EXTENSION_KEY] = SmdpSimulatorState(smdp_address, state_path, notification_url, notify_tls)
    app.register_blueprint(_admin)
    return app


def _notify(
    url: str | None,
    smdp_address: str,
    snapshot: tuple[str, str | None, str],
    *,
    point: int,
    failure: _Es2Failure | None,
    tls: bool | ssl.SSLContext = True,
) -> bool:
    """POST one HandleDownloadProgressInfo to the operator; log and return False when it fails."""
    if url is None:
        return False
    iccid, eid, profile_type = snapshot
    payload: dict[str, Any] = {
        "header": {
            "functionRequesterIdentifier": smdp_address,
            "functionCallIdentifier": f"NOTIF-{uuid.uuid4()}",
        },
        "iccid": iccid,
        "profileType": profile_type,
        "timestamp": _now(),
        "notificationPointId": point,
        "notificationPointStatus": _status_header(failure)["functionExecutionStatus"],
    }
    if eid is not None:
        payload["eid"] = eid
    content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Admin-Protocol": ADMIN_PROTOCOL}
    try:
        response = httpx.post(url, content=content, headers=headers, timeout=NOTIFICATION_TIMEOUT_SECONDS, verify=tls)
    except httpx.HTTPError as exc:
        log.warning("HandleDownloadProgressInfo %s for %s not delivered to %s: %s", point, iccid, url, exc)
        return False
    if not response.is_success:
        log.warning(
            "HandleDownloadProgressInfo %s for %s refused by %s: HTTP %s %s",
            point,
            iccid,
            url,
            response.status_code,
            response.text[:500],
        )
        return False
    return True
