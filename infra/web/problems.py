"""Every error as `application/problem+json` (RFC 9457) with a stable `code`."""

from __future__ import annotations

import http
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, g, json
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

from mvne.infra.errors import DomainError

log = logging.getLogger("mvne.http")

PROBLEM_TYPE = "urn:mvne:problem:"
PROBLEM_JSON = "application/problem+json"

# Codes for HTTP errors raised by the framework rather than by our services.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    431: "header_fields_too_large",
    500: "internal_error",
    503: "unavailable",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A problem+json response; `extra` adds members a protocol's own problem details carry (3GPP's `cause`)."""
    body = problem_document(
        status, code, title, detail, errors=errors, extra=extra, request_id=getattr(g, "request_id", None)
    )
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_document(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    errors: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A problem's members, for `problem` and for the fronts served beside the app."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    if errors:
        body["errors"] = errors
    if request_id:
        body["request_id"] = request_id
    return body


def problem_title(status: int) -> str:
    """The problem's `title`: the status's reason phrase."""
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "Error")


class ProblemError(HTTPException):
    """Raise from views or hooks to answer with a problem directly."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.problem_code = code
        self.detail = detail
        self.errors = errors
        self.extra_headers = headers or {}
        self.extra = extra


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    # webargs nests messages by location ({"json": {"field": [...]}}); clients want the fields.
    if isinstance(messages, dict) and set(messages) <= {"json", "query", "form", "headers", "path", "files"}:
        merged: dict[str, Any] = {}
        for part in messages.values():
            if isinstance(part, dict):
                merged.update(part)
            elif isinstance(part, list):  # about the body as a whole, e.g. "Invalid JSON body."
                merged.setdefault("_body", []).extend(part)
        return merged
    return messages if isinstance(messages, dict) else {"_schema": messages}


class ProblemSchema(Schema):
    """An RFC 9457 problem, as every error of the API is answered."""

    type = fields.String(required=True, metadata={"example": "urn:mvne:problem:validation_failed"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    code = fields.String(required=True, metadata={"description": "Stable, machine-readable reason."})
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), metadata={"description": "Messages per invalid field."})
    request_id = fields.String()


class ProblemApi(Api):
    """flask-smorest's Api, answering with problems instead of its own JSON errors, and documenting them."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_exception_to_problem(error)

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


# What the web kit answers with whatever the operation, for the OpenAPI document: code -> (status, detail).
KIT_PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed_body": (400, "The request body is not valid JSON: Invalid JSON body."),
    "invalid_idempotency_key": (400, "Idempotency-Key must be 1 to 255 characters."),
    "invalid_cursor": (400, "starting_after must be the id of an item of this list."),
    "unauthenticated": (401, "A valid bearer token is required."),
    "insufficient_scope": (403, "The token lacks the scope this operation needs."),
    "tenant_required": (403, "This operation is for a tenant's API client."),
    "caller_kind_refused": (403, "This operation is for callers of another kind."),
    "session_expired": (401, "The console session is unknown, over or logged out: log in again."),
    "csrf_failed": (403, "Changes made in a console session must send the session's CSRF token as X-CSRF-Token."),
    "operator_required": (403, "This operation is for platform operators."),
    "not_found": (404, "No such object."),
    "conflict": (409, "A concurrent request changed the same data; retry the request."),
    "payload_too_large": (413, "The data value transmitted exceeds the capacity limit."),
    "validation_failed": (422, "The request has invalid fields; see errors."),
    "json_too_deep": (422, "The JSON body nests arrays and objects too deeply."),
    "idempotency_key_reused": (422, "This Idempotency-Key was used with another request; use a new key."),
}

ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def problems(*errors: type[DomainError]) -> Callable[[ViewT], ViewT]:
    """Document the domain errors a view can answer with; the OpenAPI document lists them per status.

    Only documentation: the errors are answered by the app's handlers whether listed or not.
    """

    def decorate(view: ViewT) -> ViewT:
        view._mvne_problems = (*getattr(view, "_mvne_problems", ()), *errors)  # type: ignore[attr-defined]
        return view

    return decorate


def problem_example(
    status: int, code: str, title: str | None = None, detail: str | None = None, errors: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A problem body as the API sends it, for the document's examples."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title or problem_title(status), "status": status}
    body["code"] = code
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return body


def http_exception_to_problem(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if isinstance(error, ProblemError):
        headers.update(error.extra_headers)
        return problem(
            status,
            error.problem_code,
            problem_title(status),
            error.detail,
            errors=error.errors,
            headers=headers,
            extra=error.extra,
        )
    data = getattr(error, "data", None) or {}
    errors = None
    if "messages" in data:
        errors = _flatten_webargs(data["messages"])
    code = HTTP_CODES.get(status, f"http_{status}")
    detail = error.description if status != 422 else "The request has invalid fields; see errors."
    if status == 400 and errors and "_body" in errors:
        code, detail = "malformed_body", "The request body is not valid JSON: " + " ".join(errors.pop("_body"))
    return problem(status, code, problem_title(status), detail, errors=errors or None, headers=headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem(error.status, error.code, error.title, error.detail, errors=error.errors, headers=error.headers)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        return http_exception_to_problem(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return problem(
            500,
            "internal_error",
            "Internal Server Error",
            "Something went wrong on our side; nothing was changed. Quote the request id to support.",
        )

    @app.errorhandler(InternalServerError)
    def _internal(error: InternalServerError) -> Response:
        log.error("internal server error", exc_info=error.original_exception)
        return problem(
            500,
            "internal_error",
            "Internal Server Error",
            "Something went wrong on our side; nothing was changed. Quote the request id to support.",
        )
