"""Host networks (MNOs) behind one small interface, and its client for the JSON provisioning API.

The client makes one attempt per call: retries with backoff belong to the Dramatiq actors that
call it, which are idempotent, as every operation of the API is (see `provisioning.simulator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import httpx


class HostNetworkFailure(Exception):
    """Base of the host network's failures; `retryable` says whether trying again may succeed."""

    retryable: bool = False


class HostNetworkError(HostNetworkFailure):
    """The host network answered with an error status."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """True for 408, 429 and 5xx: the network may accept the same request later."""
        return self.status in (408, 429) or self.status >= 500


class HostNetworkUnavailable(HostNetworkFailure):
    """The host network could not be reached, or did not answer in time."""

    retryable = True


class HostNetwork(Protocol):
    """Provisioning of lines on a host network; every call returns the subscriber as the network sees it."""

    def provision(
        self,
        imsi: str,
        msisdn: str,
        iccid: str,
        ki: str,
        opc: str,
        *,
        services: Sequence[str] | None = None,
    ) -> dict[str, Any]: ...

    def get(self, imsi: str) -> dict[str, Any]: ...

    def suspend(self, imsi: str) -> dict[str, Any]: ...

    def resume(self, imsi: str) -> dict[str, Any]: ...

    def bar(self, imsi: str, services: Sequence[str]) -> dict[str, Any]: ...

    def unbar(self, imsi: str, services: Sequence[str]) -> dict[str, Any]: ...

    def swap_sim(self, imsi: str, *, iccid: str, new_imsi: str, ki: str, opc: str) -> dict[str, Any]: ...

    def terminate(self, imsi: str) -> dict[str, Any]: ...


class HostNetworkClient:
    """HostNetwork over the JSON REST provisioning API at `base_url` (the simulator speaks it)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()

    def __repr__(self) -> str:
        return f"HostNetworkClient({self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> HostNetworkClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def provision(
        self,
        imsi: str,
        msisdn: str,
        iccid: str,
        ki: str,
        opc: str,
        *,
        services: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Create the subscriber; the same call again answers the same subscriber."""
        body: dict[str, Any] = {"imsi": imsi, "msisdn": msisdn, "iccid": iccid, "ki": ki, "opc": opc}
        if services is not None:
            body["services"] = list(services)
        return self._call("POST", "/subscribers", body)

    def get(self, imsi: str) -> dict[str, Any]:
        """The subscriber (without its SIM keys)."""
        return self._call("GET", self._path(imsi))

    def suspend(self, imsi: str) -> dict[str, Any]:
        """Suspend the line."""
        return self._call("POST", self._path(imsi, "suspend"))

    def resume(self, imsi: str) -> dict[str, Any]:
        """Resume a suspended line."""
        return self._call("POST", self._path(imsi, "resume"))

    def bar(self, imsi: str, services: Sequence[str]) -> dict[str, Any]:
        """Bar `services` (data, voice, sms) on the line."""
        return self._call("POST", self._path(imsi, "bar"), {"services": list(services)})

    def unbar(self, imsi: str, services: Sequence[str]) -> dict[str, Any]:
        """Lift the barring of `services` on the line."""
        return self._call("POST", self._path(imsi, "unbar"), {"services": list(services)})

    def swap_sim(self, imsi: str, *, iccid: str, new_imsi: str, ki: str, opc: str) -> dict[str, Any]:
        """Move the line to a new SIM; answers the subscriber under `new_imsi`."""
        body = {"iccid": iccid, "imsi": new_imsi, "ki": ki, "opc": opc}
        return self._call("POST", self._path(imsi, "swap-sim"), body)

    def terminate(self, imsi: str) -> dict[str, Any]:
        """Terminate the line; its MSISDN becomes free on the network."""
        return self._call("DELETE", self._path(imsi))

    @staticmethod
    def _path(imsi: str, action: str | None = None) -> str:
        path = f"/subscribers/{quote(imsi, safe='')}"
        return f"{path}/{action}" if action else path

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, self.base_url + path, json=body, timeout=self.timeout)
        except httpx.TransportError as exc:
            raise HostNetworkUnavailable(f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success:
            if not isinstance(payload, dict):
                raise HostNetworkError(response.status_code, "invalid_response", "the answer is not a JSON object")
            return payload
        raise _error_from(response, payload)


def _error_from(response: httpx.Response, payload: Any) -> HostNetworkError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        fields = error.get("fields")
        return HostNetworkError(
            response.status_code,
            error["code"],
            str(error.get("message", "")),
            fields if isinstance(fields, dict) else None,
        )
    # Not the API's error shape: a proxy or load balancer in between answered.
    text = response.text.strip().replace("\n", " ")[:200]
    return HostNetworkError(response.status_code, f"http_{response.status_code}", text or response.reason_phrase)
