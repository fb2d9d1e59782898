"""Every error as `application/problem+json` (RFC 9457) with a stable `code`."""

from __future__ import annotations

import http
import logging
from typing import Any

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
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
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
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ProblemError(HTTPException):
    """Raise from views or hooks to answer with a problem directly."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.problem_code = code
        self.detail = detail
        self.errors = errors
        self.extra_headers = headers or {}


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


def http_exception_to_problem(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if isinstance(error, ProblemError):
        headers.update(error.extra_headers)
        return problem(status, error.problem_code, _title(status), error.detail, errors=error.errors, headers=headers)
    data = getattr(error, "data", None) or {}
    errors = None
    if "messages" in data:
        errors = _flatten_webargs(data["messages"])
    code = HTTP_CODES.get(status, f"http_{status}")
    detail = error.description if status != 422 else "The request has invalid fields; see errors."
    if status == 400 and errors and "_body" in errors:
        code, detail = "malformed_body", "The request body is not valid JSON: " + " ".join(errors.pop("_body"))
    return problem(status, code, _title(status), detail, errors=errors or None, headers=headers)


def _title(status: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "Error")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem(error.status, error.code, error.title, error.detail, errors=error.errors)

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
