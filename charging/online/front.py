"""The Nchf_ConvergedCharging front: a WSGI app of its own, mounted beside the Flask app at its base path.

A 5G core sends thousands of charging requests a second, all alike: three routes, one kind of caller, one JSON
body each way. The Flask app's per-request work (its context, cookie session, rate limiter, hooks and the
argument parser's layers) cost more than the charging itself, so these routes are served here with only what
they need, and the same rules as every other route of the API:

- the body is bounded, parsed once, refused when too deep or holding a NUL (the guard's own checks), then
  validated by the request schema the document publishes (`api.REQUEST_SCHEMA`);
- the caller's bearer token, standing and scope are checked by `auth.bearer_principal`, as `require` does;
- every refusal is a problem (`application/problem+json` with a stable `code`, and 3GPP's `cause` where the
  specification has one), every answer carries `X-Request-Id`, and each request is counted in the same
  metrics, under the route's pattern.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from marshmallow import ValidationError
from werkzeug.wsgi import get_host

from mvne.charging.online.api import (
    BASE_PATH,
    SCOPE,
    STANDING_TTL_S,
    answer_document,
    charging_request,
    handle,
    load_request,
    session_reference,
)
from mvne.charging.online.messages import RequestKind
from mvne.infra.ids import new_id
from mvne.infra.logging import bind_context, clear_context
from mvne.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS
from mvne.infra.runtime import Runtime
from mvne.infra.web.auth import bearer_principal
from mvne.infra.web.guard import parse_json_body
from mvne.infra.web.problems import PROBLEM_JSON, ProblemError, problem_document, problem_title

log = logging.getLogger("mvne.http")

StartResponse = Callable[..., Any]

CREATE_ROUTE = f"{BASE_PATH}/chargingdata"
UPDATE_ROUTE = f"{BASE_PATH}/chargingdata/<reference>/update"
RELEASE_ROUTE = f"{BASE_PATH}/chargingdata/<reference>/release"
# What this front serves, as (route pattern, method): the API document describes each.
ROUTES = ((CREATE_ROUTE, "POST"), (UPDATE_ROUTE, "POST"), (RELEASE_ROUTE, "POST"))

# A session's reference as this platform writes it (hex), and as another would (URL-safe characters).
_SESSION_PATH = re.compile(r"/chargingdata/([A-Za-z0-9._~-]{1,100})/(update|release)")
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json\s*(?:;.*)?", re.IGNORECASE)
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_JSON_HEADERS = [("Content-Type", "application/json")]


class NchfFront:
    """The WSGI app serving `BASE_PATH` (the dispatcher hands it the path below the base)."""

    def __init__(self, rt: Runtime, auth: Any, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.rt = rt
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else new_id("req")
        clear_context()
        bind_context(request_id=request_id)
        route = "unmatched"
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            route, status, headers, body = self._serve(environ, method)
        except ProblemError as error:
            status, headers, body = _problem(error, request_id)
        except Exception:
            log.exception("unhandled error")
            status, headers, body = _problem(
                ProblemError(
                    500,
                    "internal_error",
                    "Something went wrong on our side; nothing was changed. Quote the request id to support.",
                ),
                request_id,
            )
        finally:
            clear_context()
        headers.append(("X-Request-Id", request_id))
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {problem_title(status)}", headers)
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
        return [body]

    def _serve(self, environ: dict[str, Any], method: str) -> tuple[str, int, list[tuple[str, str]], bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/chargingdata":
            route, kind, reference = CREATE_ROUTE, RequestKind.INITIAL, ""
        elif (found := _SESSION_PATH.fullmatch(path)) is not None:
            reference = found.group(1)
            route, kind = (
                (UPDATE_ROUTE, RequestKind.UPDATE)
                if found.group(2) == "update"
                else (RELEASE_ROUTE, RequestKind.TERMINATION)
            )
        elif path.startswith("/chargingdata/"):
            raise ProblemError(
                404,
                "charging_session_not_found",
                "No charging data session has this reference.",
                extra={"cause": "SESSION_NOT_FOUND"},
            )
        else:
            raise ProblemError(404, "not_found", "No such route.")
        if method != "POST":
            raise ProblemError(405, "method_not_allowed", "Only POST is served here.", headers={"Allow": "POST"})
        caller = bearer_principal(
            self.auth, self.rt.db, environ.get("HTTP_AUTHORIZATION", ""), SCOPE, standing_ttl_s=STANDING_TTL_S
        )
        if caller.tenant_id is not None:
            raise ProblemError(403, "operator_required", "This operation is for platform operators.")
        body = self._body(environ)
        if kind == RequestKind.INITIAL:
            reference = session_reference(body)
        request = charging_request(body, f"nchf:{reference}", kind)
        document = answer_document(handle(self.rt, request), request.service)
        if kind == RequestKind.TERMINATION:
            return route, 204, [], b""
        payload = json.dumps(document, separators=(",", ":")).encode()
        if kind == RequestKind.UPDATE:
            return route, 200, list(_JSON_HEADERS), payload
        location = f"{environ.get('wsgi.url_scheme', 'http')}://{get_host(environ)}{BASE_PATH}/chargingdata/{reference}"
        return route, 201, [*_JSON_HEADERS, ("Location", location)], payload

    def _body(self, environ: dict[str, Any]) -> dict[str, Any]:
        """The request's ChargingDataRequest: bounded, parsed, checked, validated."""
        too_large = ProblemError(
            413, "payload_too_large", f"The request body is larger than the limit of {self.max_body_bytes} bytes."
        )
        if not _JSON_TYPE.fullmatch(environ.get("CONTENT_TYPE", "")):
            raise ProblemError(415, "unsupported_media_type", "The body must be JSON (Content-Type: application/json).")
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            raise ProblemError(400, "malformed_request", "Content-Length is not a number.") from None
        if length > self.max_body_bytes:
            raise too_large
        stream = environ["wsgi.input"]
        data = stream.read(length) if length >= 0 else stream.read(self.max_body_bytes + 1)
        if len(data) > self.max_body_bytes:
            raise too_large
        parsed = parse_json_body(data, max_json_depth=self.max_json_depth) if data.strip() else {}
        try:
            loaded = load_request(parsed)
        except ValidationError as error:
            messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
            raise ProblemError(
                422, "validation_failed", "The request has invalid fields; see errors.", errors=messages
            ) from None
        return loaded


def _problem(error: ProblemError, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    status = error.code or 500
    document = problem_document(
        status,
        error.problem_code,
        problem_title(status),
        error.detail,
        errors=error.errors,
        extra=error.extra,
        request_id=request_id,
    )
    headers = [("Content-Type", PROBLEM_JSON), *error.extra_headers.items()]
    return status, headers, json.dumps(document, separators=(",", ":")).encode()
