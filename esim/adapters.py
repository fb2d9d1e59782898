"""The operator side of GSMA SGP.22 ES2+: a client for an SM-DP+ and the notification parser."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

from mvne.esim.identifiers import is_valid_eid, is_valid_iccid, normalize_iccid
from mvne.esim.tls import client_tls, smdp_client_tls
from mvne.infra.settings import Settings

log = logging.getLogger(__name__)

ES2PLUS_PATH = "/gsma/rsp2/es2plus"
ADMIN_PROTOCOL = "gsma/rsp/v2.2.0"
SUCCESS_STATUSES = ("Executed-Success", "Executed-WithWarning")
EXECUTION_STATUSES = (*SUCCESS_STATUSES, "Failed", "Expired")
_CODE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_POINT_NAMES = {
    1: "eligibility_check",
    2: "confirmation_failure",
    3: "bpp_download",
    4: "bpp_installation",
}


class SmdpError(Exception):
    """Any failure talking to an SM-DP+."""

    @property
    def retryable(self) -> bool:
        """Tell whether the same call (same call id) may succeed if sent again."""
        return False


class SmdpUnavailable(SmdpError):
    """The SM-DP+ could not be reached or answered with a server error or a timeout; retry later."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"SM-DP+ unavailable during {function}: {reason}")
        self.function = function
        self.reason = reason

    @property
    def retryable(self) -> bool:
        """Always true: the call may not have run, and ES2+ call ids make a retry safe."""
        return True


class SmdpProtocolError(SmdpError):
    """The SM-DP+ answered something that is not a valid ES2+ response."""


class Es2PlusError(SmdpError):
    """The SM-DP+ executed the call and reported `Failed` (or `Expired`) with a status code."""

    def __init__(
        self,
        function: str,
        status: str,
        subject_code: str | None,
        reason_code: str | None,
        message: str | None,
    ) -> None:
        super().__init__(f"{function} {status}: {subject_code}/{reason_code} {message or ''}".rstrip())
        self.function = function
        self.status = status
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.message = message

    @property
    def code(self) -> str:
        """The status code as `subject/reason`, e.g. `8.2.5/3.7`."""
        return f"{self.subject_code}/{self.reason_code}"

    @property
    def retryable(self) -> bool:
        """True only for 1.2/4.4 (function provider busy), as SGP.22 practice advises."""
        return (self.subject_code, self.reason_code) == ("1.2", "4.4")


@dataclass(frozen=True)
class ConfirmOrderResult:
    """What ConfirmOrder returns: the matchingId, the SM-DP+ address (if sent) and the bound EID."""

    matching_id: str
    smdp_address: str | None
    eid: str | None


class SmdpPlus(Protocol):
    """The four ES2+ functions an operator calls on an SM-DP+."""

    def download_order(
        self,
        *,
        iccid: str | None = None,
        eid: str | None = None,
        profile_type: str | None = None,
        call_id: str | None = None,
    ) -> str:
        """Reserve a profile by ICCID or profile type; return its ICCID."""
        ...

    def confirm_order(
        self,
        *,
        iccid: str,
        release_flag: bool,
        eid: str | None = None,
        matching_id: str | None = None,
        confirmation_code: str | None = None,
        smds_address: str | None = None,
        call_id: str | None = None,
    ) -> ConfirmOrderResult:
        """Confirm a reserved profile, optionally releasing it for download."""
        ...

    def cancel_order(
        self,
        *,
        iccid: str,
        final_status: Literal["Available", "Unavailable"],
        eid: str | None = None,
        matching_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        """Cancel an order that is not downloaded yet."""
        ...

    def release_profile(self, *, iccid: str, call_id: str | None = None) -> None:
        """Release a confirmed profile once the network side is provisioned."""
        ...


def new_call_id() -> str:
    """Return a fresh, unique ES2+ functionCallIdentifier."""
    return f"FCI-{uuid.uuid4().hex}"


def _ssl_verify(verify: bool | str, cert: tuple[str, str] | None) -> bool | ssl.SSLContext:
    if verify is False:
        if cert is None:
            return False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(certfile=cert[0], keyfile=cert[1])
        return context
    return client_tls(verify if isinstance(verify, str) else None, cert)


class Es2PlusClient:
    """ES2+ client over HTTPS (mutual TLS with `cert`); implements `SmdpPlus`.

    `cert` is (certificate file, key file); `verify` is a bool or a CA bundle path. When `http` is
    given, that client is used as is (its own TLS settings apply) and `close()` closes it only when
    `owns_http` says so. `from_settings` builds the client the platform uses.
    """

    def __init__(
        self,
        base_url: str,
        requester_id: str,
        *,
        timeout: float = 10.0,
        cert: tuple[str, str] | None = None,
        verify: bool | str = True,
        http: httpx.Client | None = None,
        owns_http: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.requester_id = requester_id
        self.timeout = timeout
        self._owns_http = http is None or owns_http
        self._http = http if http is not None else httpx.Client(verify=_ssl_verify(verify, cert))

    @classmethod
    def from_settings(cls, settings: Settings) -> Es2PlusClient:
        """The client of the configured SM-DP+: mutual TLS with our certificate, its server checked by its CA."""
        return cls(
            settings.smdp_url,
            settings.smdp_requester_id,
            http=httpx.Client(verify=smdp_client_tls(settings)),
            owns_http=True,
        )

    def close(self) -> None:
        """Close the HTTP connection pool if this client created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Es2PlusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Es2PlusClient(base_url={self.base_url!r}, requester_id={self.requester_id!r})"

    def download_order(
        self,
        *,
        iccid: str | None = None,
        eid: str | None = None,
        profile_type: str | None = None,
        call_id: str | None = None,
    ) -> str:
        """Reserve a profile by ICCID or profile type; return its ICCID (without `F` padding)."""
        body = self._call("downloadOrder", {"iccid": iccid, "eid": eid, "profileType": profile_type}, call_id)
        answer = body.get("iccid")
        if not isinstance(answer, str) or not is_valid_iccid(answer):
            raise SmdpProtocolError(f"downloadOrder answered without a valid iccid: {answer!r}")
        return normalize_iccid(answer)

    def confirm_order(
        self,
        *,
        iccid: str,
        release_flag: bool,
        eid: str | None = None,
        matching_id: str | None = None,
        confirmation_code: str | None = None,
        smds_address: str | None = None,
        call_id: str | None = None,
    ) -> ConfirmOrderResult:
        """Confirm a reserved profile (matchingId generated by the SM-DP+ when not given)."""
        fields = {
            "iccid": iccid,
            "eid": eid,
            "matchingId": matching_id,
            "confirmationCode": confirmation_code,
            "smdsAddress": smds_address,
            "releaseFlag": release_flag,
        }
        body = self._call("confirmOrder", fields, call_id)
        answer_matching_id = body.get("matchingId")
        if not isinstance(answer_matching_id, str):
            raise SmdpProtocolError("confirmOrder answered without a matchingId")
        smdp_address = body.get("smdpAddress")
        answer_eid = body.get("eid")
        return ConfirmOrderResult(
            matching_id=answer_matching_id,
            smdp_address=smdp_address if isinstance(smdp_address, str) and smdp_address else None,
            eid=answer_eid if isinstance(answer_eid, str) and answer_eid else None,
        )

    def cancel_order(
        self,
        *,
        iccid: str,
        final_status: Literal["Available", "Unavailable"],
        eid: str | None = None,
        matching_id: str | None = None,
        call_id: str | None = None,
    ) -> None:
        """Cancel an order not downloaded yet; use `Unavailable` if its activation code may have leaked."""
        fields = {
            "iccid": iccid,
            "eid": eid,
            "matchingId": matching_id,
            "finalProfileStatusIndicator": final_status,
        }
        self._call("cancelOrder", fields, call_id)

    def release_profile(self, *, iccid: str, call_id: str | None = None) -> None:
        """Release a confirmed profile for download (after network provisioning)."""
        self._call("releaseProfile", {"iccid": iccid}, call_id)

    def _call(self, function: str, fields: dict[str, Any], call_id: str | None) -> dict[str, Any]:
        call_id = call_id or new_call_id()
        payload = {
            "header": {"functionRequesterIdentifier": self.requester_id, "functionCallIdentifier": call_id},
            **{name: value for name, value in fields.items() if value is not None},
        }
        # SGP.22 6.5 allows escaping only what JSON requires, hence no ASCII escaping.
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Admin-Protocol": ADMIN_PROTOCOL}
        url = f"{self.base_url}{ES2PLUS_PATH}/{function}"
        try:
            response = self._http.post(url, content=content, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise SmdpUnavailable(function, f"timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise SmdpUnavailable(function, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise SmdpUnavailable(function, f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise SmdpProtocolError(f"{function} answered HTTP {response.status_code}, ES2+ expects 200")
        try:
            body = response.json()
            execution = body["header"]["functionExecutionStatus"]
            status = execution["status"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SmdpProtocolError(f"{function} answered without an ES2+ response header") from exc
        if not isinstance(body, dict) or status not in EXECUTION_STATUSES:
            raise SmdpProtocolError(f"{function} answered an unknown status {status!r}")
        code_data = execution.get("statusCodeData") or {}
        if not isinstance(code_data, dict):
            raise SmdpProtocolError(f"{function} answered a malformed statusCodeData")
        log.info(
            "ES2+ %s call %s: %s %s/%s",
            function,
            call_id,
            status,
            code_data.get("subjectCode"),
            code_data.get("reasonCode"),
        )
        if status not in SUCCESS_STATUSES:
            raise Es2PlusError(
                function,
                status,
                code_data.get("subjectCode"),
                code_data.get("reasonCode"),
                code_data.get("message"),
            )
        return body


class InvalidNotification(ValueError):
    """A HandleDownloadProgressInfo body is malformed; `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class DownloadProgress:
    """A validated HandleDownloadProgressInfo notification from the SM-DP+."""

    requester_id: str
    call_id: str
    iccid: str
    eid: str | None
    profile_type: str
    timestamp: datetime
    notification_point_id: int
    status: str
    subject_code: str | None = None
    reason_code: str | None = None
    message: str | None = None
    result_data: bytes | None = None

    @property
    def succeeded(self) -> bool:
        """Tell whether this step of the download went well."""
        return self.status in SUCCESS_STATUSES

    @property
    def point_name(self) -> str:
        """Name of the notification point (`bpp_download`, `bpp_installation`, ... or `custom_<n>`)."""
        return _POINT_NAMES.get(self.notification_point_id, f"custom_{self.notification_point_id}")

    @property
    def installed(self) -> bool:
        """Tell whether this notification reports a successful installation on the eUICC."""
        return self.notification_point_id == 4 and self.succeeded


def _required_string(data: dict[str, Any], field: str, prefix: str = "") -> str:
    value = data.get(field)
    if value is None:
        raise InvalidNotification(prefix + field, "is missing")
    if not isinstance(value, str) or not value:
        raise InvalidNotification(prefix + field, "must be a non-empty string")
    return value


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidNotification("timestamp", "must be a W3C date-time like 2024-05-01T10:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidNotification("timestamp", "must carry a time zone (Z or +hh:mm)")
    return moment


def _execution_status(
    payload: dict[str, Any],
) -> tuple[str, str | None, str | None, str | None]:
    status_block = payload.get("notificationPointStatus")
    if status_block is None:
        raise InvalidNotification("notificationPointStatus", "is missing")
    if not isinstance(status_block, dict):
        raise InvalidNotification("notificationPointStatus", "must be an object")
    status = _required_string(status_block, "status", "notificationPointStatus.")
    if status not in EXECUTION_STATUSES:
        raise InvalidNotification("notificationPointStatus.status", f"must be one of {', '.join(EXECUTION_STATUSES)}")
    code_data = status_block.get("statusCodeData")
    if code_data is None:
        return status, None, None, None
    prefix = "notificationPointStatus.statusCodeData."
    if not isinstance(code_data, dict):
        raise InvalidNotification(prefix.rstrip("."), "must be an object")
    subject = _required_string(code_data, "subjectCode", prefix)
    reason = _required_string(code_data, "reasonCode", prefix)
    for name, code in (("subjectCode", subject), ("reasonCode", reason)):
        if not _CODE.fullmatch(code):
            raise InvalidNotification(prefix + name, "must be dotted digits like 8.2.10")
    message = code_data.get("message")
    if message is not None and not isinstance(message, str):
        raise InvalidNotification(prefix + "message", "must be a string")
    return status, subject, reason, message


def parse_download_progress(payload: dict[str, Any]) -> DownloadProgress:
    """Validate a HandleDownloadProgressInfo body (SGP.22 5.3.5); InvalidNotification names the bad field."""
    if not isinstance(payload, dict):
        raise InvalidNotification("body", "must be a JSON object")
    header = payload.get("header")
    if header is None:
        raise InvalidNotification("header", "is missing")
    if not isinstance(header, dict):
        raise InvalidNotification("header", "must be an object")
    requester_id = _required_string(header, "functionRequesterIdentifier", "header.")
    call_id = _required_string(header, "functionCallIdentifier", "header.")
    iccid = _required_string(payload, "iccid")
    if not is_valid_iccid(iccid):
        raise InvalidNotification("iccid", "is not a valid ICCID")
    eid = payload.get("eid")
    if eid is not None and (not isinstance(eid, str) or not is_valid_eid(eid)):
        raise InvalidNotification("eid", "is not a valid EID")
    profile_type = _required_string(payload, "profileType")
    timestamp = _timestamp(_required_string(payload, "timestamp"))
    point = payload.get("notificationPointId")
    if point is None:
        raise InvalidNotification("notificationPointId", "is missing")
    if not isinstance(point, int) or isinstance(point, bool) or point < 0:
        raise InvalidNotification("notificationPointId", "must be a non-negative integer")
    status, subject, reason, message = _execution_status(payload)
    result_data = payload.get("resultData")
    decoded: bytes | None = None
    if result_data is not None:
        if not isinstance(result_data, str) or not _BASE64.fullmatch(result_data):
            raise InvalidNotification("resultData", "must be base64")
        try:
            decoded = base64.b64decode(result_data, validate=True)
        except binascii.Error:
            raise InvalidNotification("resultData", "must be base64") from None
    return DownloadProgress(
        requester_id=requester_id,
        call_id=call_id,
        iccid=normalize_iccid(iccid),
        eid=eid,
        profile_type=profile_type,
        timestamp=timestamp,
        notification_point_id=point,
        status=status,
        subject_code=subject,
        reason_code=reason,
        message=message,
        result_data=decoded,
    )
