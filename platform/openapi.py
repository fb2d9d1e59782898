"""The OpenAPI document's shared parts, and the page that renders it at `/v1/docs`.

Each domain's blueprint documents its own bodies, answers and domain problems (`@problems(...)`).
What every operation shares is added here from the view functions themselves, as the document is
built: the OAuth2 scope the view requires (`require` marks it), the `Idempotency-Key` header on
POSTs, and the problems the web kit answers with (400, 401, 403, 404, 409, 413, 422). Every operation
the app rate-limits documents its 429 (with `Retry-After`) and the RateLimit fields of its answers. The
token endpoint and the key set, served by `mvne.platform.auth`, are documented here too.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, Response, render_template_string, send_from_directory, url_for
from flask_smorest import Api
from werkzeug.routing import Map, Rule

from mvne.infra.errors import DomainError
from mvne.infra.web import limits
from mvne.infra.web.auth import (
    CSRF_HEADER,
    KIND_CLIENT,
    KIND_OPERATOR,
    KIND_STAFF,
    KIND_SUBSCRIBER,
    SESSION_COOKIE,
)
from mvne.infra.web.idempotency import HEADER as IDEMPOTENCY_HEADER
from mvne.infra.web.problems import KIT_PROBLEMS, PROBLEM_JSON, problem_example
from mvne.platform.auth import OPERATOR_SCOPES, SUBSCRIBER_SCOPES, TENANT_SCOPES

DOCS_FOLDER = Path(__file__).parent / "static" / "docs"
TOKEN_URL = "/oauth/token"  # noqa: S105 (a path, not a secret)
JWKS_URL = "/.well-known/jwks.json"
AUTHORIZE_URL = "/oauth/authorize"
REVOKE_URL = "/oauth/revoke"
METADATA_URL = "/.well-known/oauth-authorization-server"
OAUTH_TAG = "oauth"
METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch", "delete")

SCOPE_DESCRIPTIONS = {
    "offers:read": "Read the tenant's offers.",
    "offers:write": "Create and publish offers.",
    "rates:read": "Read the tenant's rate cards, their versions and lines, and quote prices with them.",
    "rates:write": "Create rate cards, import and publish their versions, delete draft versions.",
    "customers:read": "Read subscriber accounts.",
    "customers:write": "Open subscriber accounts.",
    "subscriptions:read": "Read lines, their eSIM details and their usage.",
    "subscriptions:write": "Order lines.",
    "usage:read": "Read rated usage records and how each was rated, and rejected usage.",
    "usage:write": "Send usage records to rate; fix, re-rate or discard rejected ones.",
    "billing:read": "Read billing runs.",
    "billing:write": "Start billing runs.",
    "invoices:read": "Read invoices and their PDFs.",
    "events:read": "Read the tenant's event log.",
    "audit:read": "Read the tenant's audit log: who changed what through the API, before and after.",
    "webhooks:read": "Read webhook endpoints and their deliveries.",
    "webhooks:write": "Register, delete and replay webhook endpoints and deliveries.",
    "api_clients:read": "Read the tenant's API clients (never their secrets).",
    "api_clients:write": "Create the tenant's API clients, rotate their secrets and revoke them.",
    "tenant:read": "Read the tenant's own settings: legal profile, brand and logo, market, billing settings, "
    "host network, onboarding checklist and sandbox test numbers.",
    "tenant:write": "Set the tenant's own settings (legal profile, brand and logo, market, billing settings, host "
    "network) and launch it out of its sandbox.",
    "staff:read": "Read the tenant's staff users and their invitations.",
    "staff:write": "Invite staff users, change their roles, disable them and revoke invitations.",
    "carrier_billing:charge": "Merchants: charge the tenant's lines and refund their own charges (carrier billing).",
    "tenants:read": "Platform operators: read tenants and every API client.",
    "tenants:write": "Platform operators: onboard tenants, issue their API clients and revoke any client.",
    "operations:read": "Platform operators: read dead-lettered jobs.",
    "operations:write": "Platform operators: replay dead-lettered jobs.",
    "charging:network": "A host network's core: open, update and release online charging sessions (Nchf).",
    "me:read": "Subscribers, through an app: read their own account, lines, usage, invoices and eSIM.",
    "me:write": "Subscribers, through an app: change their own account (their password).",
}

DESCRIPTION = f"""Launch and run a mobile operator: tenants, offers, customers, eSIM subscriptions, usage,
billing runs and invoices.

**Authentication.** Exchange your API client's credentials for an access token at `{TOKEN_URL}`
(OAuth2 client credentials) and send it as `Authorization: Bearer <token>`. Each operation names the
scope it needs; a tenant's client acts on its own tenant only. On this page, **Authorize** does the
exchange for you.

**Console sessions.** Staff users log in with `POST /v1/console/sessions` (tenant slug, e-mail,
password, and a one-time code when two-factor login is on): the answer sets the `{SESSION_COOKIE}` cookie
and gives a CSRF token, sent back as `{CSRF_HEADER}` with every POST, PUT, PATCH and DELETE. A session
holds the scopes of the user's role (owner, admin, catalog_manager, support, finance, read_only).

**Subscribers' apps.** Register an app (`POST /v1/apps`, a public client with no secret); it signs its
subscribers in with the authorization code grant and PKCE (S256) at `{AUTHORIZE_URL}`, gets tokens at
`{TOKEN_URL}` (refresh tokens rotate at each use) and revokes them at `{REVOKE_URL}`. OAuth libraries
configure themselves from `{METADATA_URL}` (RFC 8414). A subscriber's token reads only `/v1/me`.

**Errors** are `application/problem+json` (RFC 9457) with a stable `code`, and `errors` per field
when fields are invalid.

**Retries.** Send an `{IDEMPOTENCY_HEADER}` with every POST: a retry with the same key and body
returns the first response (marked `Idempotent-Replayed: true`); the same key with another body is
answered 422 `idempotency_key_reused`.

**Lists** are paged by cursor: `limit` and `starting_after` (the last id of the previous page),
answered with `data` and `has_more`.

**Rate limits.** Each API client has a budget of requests per window, and the token endpoint a
stricter one per address and per confidential client (tokens granted); calls without a valid token count
against their address.
Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds), and the same as
`RateLimit-Policy` and `RateLimit`. Past the limit the answer is 429 `rate_limited` with `Retry-After`
(seconds).
"""

# What each status means, before the list of its codes.
STATUS_TEXT = {
    400: "The request is malformed.",
    401: "No valid bearer token was sent.",
    403: "The token may not do this.",
    404: "No such object for the caller.",
    409: "The request conflicts with the current state; nothing was changed.",
    413: "The request body is too large.",
    422: "The request is well-formed but invalid; nothing was changed.",
    423: "Locked for a while; nothing was changed. Retry after `Retry-After` seconds.",
    429: "Too many requests in the window; nothing was changed. Retry after `Retry-After` seconds.",
}
# The same statuses, for operations that take no token (login, sign-up).
PUBLIC_STATUS_TEXT = {
    401: "The credentials are wrong, or a second factor is needed.",
    403: "The account may not do this yet.",
}
# How each kind of caller is named in an operation's description.
KIND_NAMES = {
    KIND_CLIENT: "a tenant's API client",
    KIND_STAFF: "a staff user's console session",
    KIND_SUBSCRIBER: "a subscriber's app",
    KIND_OPERATOR: "a platform operator's client",
}
CONSOLE_SESSION = "consoleSession"

_INTEGER = {"type": "integer", "minimum": 0}
# The RateLimit fields (IETF httpapi-ratelimit-headers), in `components.headers`.
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    limits.LIMIT_HEADER: {"description": "Requests allowed in the window.", "schema": _INTEGER},
    limits.REMAINING_HEADER: {"description": "Requests left in the current window.", "schema": _INTEGER},
    limits.RESET_HEADER: {"description": "Seconds until the window resets.", "schema": _INTEGER},
    limits.POLICY_HEADER: {
        "description": "The quota policy: its name, `q` requests per `w` seconds.",
        "schema": {"type": "string"},
        "example": '"api";q=1200;w=60',
    },
    limits.RATELIMIT_HEADER: {
        "description": "What is left of the policy: `r` requests remaining, `t` seconds until it resets.",
        "schema": {"type": "string"},
        "example": '"api";r=1199;t=60',
    },
}
RETRY_AFTER = {
    "description": "Seconds to wait before the limit allows another request.",
    "schema": {"type": "integer", "minimum": 1},
}


def scopes(names: tuple[str, ...] = (*TENANT_SCOPES, *OPERATOR_SCOPES)) -> dict[str, str]:
    """Scopes a token can carry (by default a client's, from client credentials), with what each allows."""
    return {scope: SCOPE_DESCRIPTIONS.get(scope, scope) for scope in names}


def spec_options() -> dict[str, Any]:
    """The document's fixed parts (flask-smorest's `API_SPEC_OPTIONS`)."""
    return {
        "info": {"description": DESCRIPTION},
        "components": {
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "OAuth2 client credentials: an API client's id and secret for a token. "
                    "Subscribers, through the tenant's apps: authorization code with PKCE (S256).",
                    "flows": {
                        "clientCredentials": {"tokenUrl": TOKEN_URL, "scopes": scopes()},
                        "authorizationCode": {
                            "authorizationUrl": AUTHORIZE_URL,
                            "tokenUrl": TOKEN_URL,
                            "refreshUrl": TOKEN_URL,
                            "scopes": scopes(SUBSCRIBER_SCOPES),
                        },
                    },
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": f"An access token from `{TOKEN_URL}`, pasted as is.",
                },
                CONSOLE_SESSION: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "A staff user's console session, set by POST /v1/console/sessions; it holds the "
                    f"scopes of the user's role. POST, PUT, PATCH and DELETE also send `{CSRF_HEADER}`.",
                },
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The API client's id and secret, for the token endpoint only.",
                },
            },
            "headers": {**RATE_LIMIT_HEADERS, limits.RETRY_AFTER_HEADER: RETRY_AFTER},
            "parameters": {
                "IdempotencyKey": {
                    "in": "header",
                    "name": IDEMPOTENCY_HEADER,
                    "required": False,
                    "description": "Makes the POST safe to retry: a retry with the same key and body returns the "
                    "first response; the same key with another body is answered 422 `idempotency_key_reused`.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "example": "8b1f7e52-4c1d-4a0e-9a57-0d3c1f6a2b90",
                }
            },
        },
        "security": [{"oauth2": []}, {"bearer": []}],
    }


class OperationDocs(BasePlugin):
    """Adds to each operation what its view function says: scope, idempotency, the problems it can answer."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations or path is None:
            return
        policies = limits.rate_limits(self.app).policies(rule.endpoint)
        if policies:
            for method, operation in operations.items():
                if method in METHODS:
                    document_rate_limits(operation, policies)
        view = self.app.view_functions.get(rule.endpoint)
        errors: tuple[type[DomainError], ...] = getattr(view, "_mvne_problems", ())
        if getattr(view, "_mvne_public", False):
            for method, operation in operations.items():
                if method in METHODS:
                    self.document_public(operation, method=method, path=path, errors=errors)
            return
        scope: str | None = getattr(view, "_mvne_scope", None)
        if scope is None:
            return
        tenant: bool = getattr(view, "_mvne_tenant", True)
        kinds: tuple[str, ...] | None = getattr(view, "_mvne_kinds", None)
        for method, operation in operations.items():
            if method in METHODS:
                self.document(
                    operation, method=method, path=path, scope=scope, tenant=tenant, kinds=kinds, errors=errors
                )

    def document(
        self,
        operation: dict[str, Any],
        *,
        method: str,
        path: str,
        scope: str,
        tenant: bool,
        kinds: tuple[str, ...] | None,
        errors: Iterable[type[DomainError]],
    ) -> None:
        staff = tenant and (kinds is None or KIND_STAFF in kinds)
        operation["security"] = [{"oauth2": [scope]}, {"bearer": [scope]}]
        if staff:
            operation["security"].append({CONSOLE_SESSION: [scope]})
        caller = "a tenant's API client" if tenant else "a platform operator's client"
        note = f"Needs a token of {caller} with the scope `{scope}`."
        if kinds is not None:
            callers = " or ".join(KIND_NAMES.get(kind, kind) for kind in kinds)
            note = f"For {callers} only, with the scope `{scope}`."
        elif staff:
            note += f" A staff user's console session may call it when its role grants `{scope}`."
        operation["description"] = f"{operation['description']}\n\n{note}" if operation.get("description") else note

        kit: dict[str, None] = dict.fromkeys(["unauthenticated", "insufficient_scope"])
        kit["tenant_required" if tenant else "operator_required"] = None
        if kinds is not None:
            kit["caller_kind_refused"] = None
        if staff:
            kit["session_expired"] = None
            if method in WRITES:
                kit["csrf_failed"] = None
        self.document_problems(operation, method=method, path=path, kit=kit, errors=errors)

    def document_public(
        self, operation: dict[str, Any], *, method: str, path: str, errors: Iterable[type[DomainError]]
    ) -> None:
        """An operation anyone may call: no token (`security: []`), and only the problems it can answer."""
        operation["security"] = []
        note = "Needs no token."
        operation["description"] = f"{operation['description']}\n\n{note}" if operation.get("description") else note
        self.document_problems(operation, method=method, path=path, kit={}, errors=errors, public=True)

    def document_problems(
        self,
        operation: dict[str, Any],
        *,
        method: str,
        path: str,
        kit: dict[str, None],
        errors: Iterable[type[DomainError]],
        public: bool = False,
    ) -> None:
        has_body = "requestBody" in operation
        has_query = any(isinstance(p, dict) and p.get("in") == "query" for p in operation.get("parameters", ()))
        if "{" in path:
            kit.update(dict.fromkeys(["not_found", "validation_failed"]))  # a path segment may carry a NUL
        if any(isinstance(p, dict) and p.get("name") == "starting_after" for p in operation.get("parameters", ())):
            kit["invalid_cursor"] = None
        if method == "post" and not public:
            operation.setdefault("parameters", []).append("IdempotencyKey")
            kit.update(dict.fromkeys(["invalid_idempotency_key", "idempotency_key_reused"]))
            _mark_replayable(operation)
        if has_body:
            kit.update(dict.fromkeys(["malformed_body", "payload_too_large", "validation_failed", "json_too_deep"]))
        if has_query:
            kit["validation_failed"] = None
        if method in WRITES:
            kit["conflict"] = None

        by_status: dict[int, list[dict[str, Any]]] = {}
        for error in errors:
            by_status.setdefault(error.status, []).append(problem_example(error.status, error.code, error.title))
        for code in kit:
            status, detail = KIT_PROBLEMS[code]
            if status == 404 and 404 in by_status:
                continue  # the view names what is not found
            fields = {"name": ["Missing data for required field."]} if code == "validation_failed" else None
            by_status.setdefault(status, []).append(problem_example(status, code, detail=detail, errors=fields))

        responses = operation.setdefault("responses", {})
        for status, examples in sorted(by_status.items()):
            for key in (status, str(status)):
                responses.pop(key, None)
            responses[str(status)] = self.problem_response(status, examples, public=public)

    def problem_response(self, status: int, examples: list[dict[str, Any]], *, public: bool = False) -> dict[str, Any]:
        text = (PUBLIC_STATUS_TEXT if public else {}).get(status) or STATUS_TEXT.get(status, "")
        if status == 413 and self.app.config.get("MAX_CONTENT_LENGTH"):
            text = f"The request body is larger than {self.app.config['MAX_CONTENT_LENGTH']} bytes."
        codes = ", ".join(f"`{example['code']}`" for example in examples)
        response: dict[str, Any] = {
            "description": f"{text} `code`: {codes}.".strip(),
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {
                        example["code"]: {
                            "summary": example.get("detail") or example["code"].replace("_", " ").capitalize(),
                            "value": example,
                        }
                        for example in examples
                    },
                }
            },
        }
        if status == 423:
            response["headers"] = {
                limits.RETRY_AFTER_HEADER: {"$ref": f"#/components/headers/{limits.RETRY_AFTER_HEADER}"}
            }
        if status in (401, 403) and not public:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "The bearer challenge (RFC 6750), naming the error and, on 403, the scope needed.",
                    "schema": {"type": "string"},
                }
            }
        return response


def document_rate_limits(operation: dict[str, Any], policies: list[tuple[str, Any]]) -> None:
    """The 429 a limited operation answers past its limit, and the RateLimit fields of its answers."""
    window = " and ".join(f"{item.amount} per {limits.window_text(item)}" for _, item in policies)
    name = policies[0][0]
    who = "client id and per address" if name == limits.TOKEN_POLICY else "API client (per address without a token)"
    text = f"Over the limit of {window} per {who}; nothing was changed. Retry after `Retry-After` seconds."
    example = problem_example(
        429,
        limits.CODE,
        detail=f"Too many requests: the limit is {window} "
        f"{'for this client id' if name == limits.TOKEN_POLICY else 'for this API client'}; retry in 30 seconds.",
    )
    refs = {header: {"$ref": f"#/components/headers/{header}"} for header in RATE_LIMIT_HEADERS}
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if str(status).startswith("2") and isinstance(response, dict):
            response.setdefault("headers", {}).update(refs)
    responses.pop(429, None)
    responses["429"] = {
        "description": f"{text} `code`: `{limits.CODE}`.",
        "headers": {limits.RETRY_AFTER_HEADER: {"$ref": f"#/components/headers/{limits.RETRY_AFTER_HEADER}"}, **refs},
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {limits.CODE: {"summary": example["detail"], "value": example}},
            }
        },
    }


def _mark_replayable(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if str(status).startswith("2") and isinstance(response, dict):
            response.setdefault("headers", {})["Idempotent-Replayed"] = {
                "description": f"`true` when this is the stored response of an earlier request with the same "
                f"`{IDEMPOTENCY_HEADER}`.",
                "schema": {"type": "string", "enum": ["true"]},
            }


# The token endpoint and the key set (RFC 6749 section 4.4 and 5, RFC 7517).
TOKEN_SCHEMAS: dict[str, dict[str, Any]] = {
    "TokenRequest": {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials", "authorization_code", "refresh_token"]},
            "scope": {
                "type": "string",
                "description": "Space-separated scopes to grant, among the client's; all of them when absent.",
                "example": "offers:read offers:write",
            },
            "client_id": {
                "type": "string",
                "description": "When not sent with HTTP Basic authentication; an app (public client) sends only this.",
            },
            "client_secret": {"type": "string", "description": "When not sent with HTTP Basic authentication."},
            "code": {"type": "string", "description": "authorization_code: the code the app was sent back with."},
            "redirect_uri": {"type": "string", "description": "authorization_code: the one the code was asked with."},
            "code_verifier": {
                "type": "string",
                "description": "authorization_code: the PKCE verifier whose S256 hash was the code_challenge.",
            },
            "refresh_token": {
                "type": "string",
                "description": "refresh_token: the latest refresh token; each is used once and replaced.",
            },
        },
    },
    "Token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "A signed JWT (RS256); keys at " + JWKS_URL},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "description": "Seconds until the token expires."},
            "scope": {"type": "string", "description": "The scopes granted, space-separated."},
            "refresh_token": {
                "type": "string",
                "description": "Apps only: for the next access token, once (a used one revokes the sign-in).",
            },
        },
    },
    "RevocationRequest": {
        "type": "object",
        "required": ["token"],
        "properties": {
            "token": {"type": "string", "description": "A refresh token or an access token."},
            "token_type_hint": {"type": "string", "enum": ["refresh_token", "access_token"]},
            "client_id": {"type": "string", "description": "The app's client_id (public clients)."},
            "client_secret": {"type": "string", "description": "When not sent with HTTP Basic authentication."},
        },
    },
    "AuthorizationServerMetadata": {
        "type": "object",
        "description": "RFC 8414 authorization server metadata.",
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "grant_types_supported",
            "code_challenge_methods_supported",
            "token_endpoint_auth_methods_supported",
        ],
        "properties": {
            "issuer": {"type": "string", "description": "Also the `iss` of every access token."},
            "authorization_endpoint": {"type": "string"},
            "token_endpoint": {"type": "string"},
            "revocation_endpoint": {"type": "string"},
            "jwks_uri": {"type": "string"},
            "scopes_supported": {"type": "array", "items": {"type": "string"}},
            "response_types_supported": {"type": "array", "items": {"type": "string"}},
            "response_modes_supported": {"type": "array", "items": {"type": "string"}},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
            "token_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}},
            "revocation_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}},
            "service_documentation": {"type": "string"},
        },
    },
    "AuthorizationStep": {
        "type": "object",
        "required": ["csrf_token", "action"],
        "properties": {
            "csrf_token": {"type": "string", "description": "From the page's form."},
            "action": {"type": "string", "enum": ["email", "password", "send_code", "code", "consent", "restart"]},
            "email": {"type": "string"},
            "password": {"type": "string"},
            "code": {"type": "string", "description": "The six-digit code from the e-mail."},
            "decision": {"type": "string", "enum": ["allow", "deny"]},
        },
    },
    "OAuthError": {
        "type": "object",
        "required": ["error"],
        "description": "An OAuth2 error (RFC 6749 section 5.2).",
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "invalid_client",
                    "invalid_grant",
                    "unauthorized_client",
                    "unsupported_grant_type",
                    "invalid_scope",
                    "unsupported_token_type",
                ],
            },
            "error_description": {"type": "string"},
            "error_uri": {"type": "string"},
        },
    },
    "JsonWebKeySet": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid"],
                    "properties": {
                        "kty": {"type": "string", "example": "RSA"},
                        "kid": {"type": "string"},
                        "use": {"type": "string", "example": "sig"},
                        "alg": {"type": "string", "example": "RS256"},
                        "n": {"type": "string"},
                        "e": {"type": "string"},
                    },
                },
            }
        },
    },
}

NO_STORE = {
    "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
    "Pragma": {"schema": {"type": "string", "enum": ["no-cache"]}},
}


def _oauth_error(description: str, errors: dict[str, str], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/OAuthError"},
                "examples": {
                    error: {"value": {"error": error, "error_description": text}} for error, text in errors.items()
                },
            }
        },
    }
    if headers:
        response["headers"] = headers
    return response


TOKEN_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "issueToken",
    "summary": "Get an access token (client credentials, authorization code, refresh token)",
    "description": "A back end authenticates with HTTP Basic (`client_secret_basic`) or with `client_id` and "
    "`client_secret` in the form (`client_secret_post`), and receives a short-lived signed access token. An app "
    "(public client) sends its `client_id` alone: `authorization_code` with `code`, `redirect_uri` and the PKCE "
    "`code_verifier` (a code works once; used again, it revokes what it gave), or `refresh_token` (each refresh "
    "token works once and comes back replaced; a replaced one used again revokes the whole sign-in).",
    "security": [{"clientBasic": []}, {}],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"$ref": "#/components/schemas/TokenRequest"},
                "example": {"grant_type": "client_credentials", "scope": "offers:read offers:write"},
            }
        },
    },
    "responses": {
        "200": {
            "description": "The access token.",
            "headers": NO_STORE,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Token"},
                    "example": {
                        "access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6...",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "scope": "offers:read offers:write",
                    },
                }
            },
        },
        "400": _oauth_error(
            "The request is not a valid client-credentials request.",
            {
                "invalid_request": 'Missing "grant_type" in request.',
                "unsupported_grant_type": "unsupported_grant_type: grant_type=password is not supported",
                "invalid_scope": "The requested scope is invalid, unknown, or malformed.",
                "unauthorized_client": "The client is not authorized to use this grant type.",
                "invalid_grant": "Code challenge failed.",
                "invalid_client": "The client cannot authenticate with methods: ['none'].",
            },
            NO_STORE,
        ),
        "401": _oauth_error(
            "The client's credentials are unknown or wrong.",
            {"invalid_client": "The client cannot authenticate with methods: client_secret_basic."},
            {"WWW-Authenticate": {"description": "Basic challenge.", "schema": {"type": "string"}}, **NO_STORE},
        ),
    },
}

JWKS_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "getJwks",
    "summary": "The public keys that verify access tokens",
    "security": [],
    "responses": {
        "200": {
            "description": "The key set (RFC 7517).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JsonWebKeySet"}}},
        }
    },
}


_HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}
_PAGE_HEADERS = {"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}}
_REDIRECT = {
    "description": "Back to the app's registered redirect URI: with `code` and `state`, or with `error` "
    "(`invalid_request`: PKCE missing or not S256; `access_denied`; `unsupported_response_type`; `invalid_scope`).",
    "headers": {"Location": {"schema": {"type": "string"}}},
}
_AUTHORIZE_PARAMETERS = [
    {"in": "query", "name": name, "required": required, "description": text, "schema": schema}
    for name, required, text, schema in (
        ("response_type", True, "`code`.", {"type": "string", "enum": ["code"]}),
        ("client_id", True, "The app's client_id.", {"type": "string", "maxLength": 64}),
        ("redirect_uri", True, "One of the app's redirect URIs, exactly.", {"type": "string", "maxLength": 2000}),
        ("scope", False, "`me:read`, `me:write`; the app's scopes when absent.", {"type": "string", "maxLength": 200}),
        ("state", False, "Sent back as is.", {"type": "string", "maxLength": 512}),
        ("code_challenge", True, "BASE64URL(SHA256(code_verifier)).", {"type": "string", "minLength": 43}),
        ("code_challenge_method", True, "`S256` (plain is refused).", {"type": "string", "enum": ["S256"]}),
    )
]
AUTHORIZE_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "authorize",
    "summary": "The sign-in page of the tenant's apps (authorization code with PKCE)",
    "description": "Opened in the subscriber's browser. The client and the redirect URI are checked first: when "
    "either is wrong the page says so and never redirects. The page, in the tenant's brand, asks for the e-mail, "
    "a password or a code e-mailed on request, then consent.",
    "security": [],
    "parameters": _AUTHORIZE_PARAMETERS,
    "responses": {
        "200": {"description": "The sign-in page.", "headers": _PAGE_HEADERS, "content": _HTML_PAGE},
        "302": _REDIRECT,
        "400": {"description": "The error page: unknown app or unregistered redirect URI.", "content": _HTML_PAGE},
        "404": {"description": "The app's brand is no longer on the platform.", "content": _HTML_PAGE},
        "422": {"description": "The error page: a parameter holds a NUL character.", "content": _HTML_PAGE},
    },
}
AUTHORIZE_STEP_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "authorizeStep",
    "summary": "A form of the sign-in page (browsers only)",
    "description": "Posted by the page's own forms, with the CSRF token they carry and the page's cookie.",
    "security": [],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"$ref": "#/components/schemas/AuthorizationStep"},
                "example": {"csrf_token": "ImFiYyI.Zx...", "action": "email", "email": "ada@example.com"},
            }
        },
    },
    "responses": {
        "200": {"description": "The page's next step.", "headers": _PAGE_HEADERS, "content": _HTML_PAGE},
        "302": _REDIRECT,
        "400": {
            "description": "The page expired (no cookie, or a CSRF token that does not match it), or a field "
            "holds a NUL character (as JSON, like the token endpoint).",
            "content": {**_HTML_PAGE, "application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}},
        },
        "404": {"description": "The app's brand is no longer on the platform.", "content": _HTML_PAGE},
    },
}
REVOKE_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "revokeToken",
    "summary": "Revoke a subscriber's token (RFC 7009)",
    "description": "An app sends a refresh token or an access token with its `client_id`: the whole sign-in is "
    "revoked (its refresh tokens, and its access tokens from the next request). An unknown token is answered "
    "200 all the same.",
    "security": [{"clientBasic": []}, {}],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"$ref": "#/components/schemas/RevocationRequest"},
                "example": {
                    "token": "c5QhD1mR3b...",
                    "token_type_hint": "refresh_token",
                    "client_id": "cli_01M8NHTM21YRHT2QG60D9HJAWD",
                },
            }
        },
    },
    "responses": {
        "200": {
            "description": "Revoked, or unknown.",
            "headers": NO_STORE,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": _oauth_error(
            "The request is not a valid revocation request.",
            {
                "invalid_request": "Missing 'token' in request.",
                "unsupported_token_type": "The token type is not supported.",
                "invalid_client": "The client does not exist on this server.",
                "invalid_grant": "The token was not issued to this client.",
            },
            NO_STORE,
        ),
        "401": _oauth_error(
            "The client's credentials are wrong.",
            {"invalid_client": "The client cannot authenticate with methods: client_secret_basic."},
            {"WWW-Authenticate": {"description": "Basic challenge.", "schema": {"type": "string"}}, **NO_STORE},
        ),
    },
}
METADATA_OPERATION: dict[str, Any] = {
    "tags": [OAUTH_TAG],
    "operationId": "getAuthorizationServerMetadata",
    "summary": "The authorization server's metadata (RFC 8414)",
    "security": [],
    "responses": {
        "200": {
            "description": "Where the endpoints are and what they support.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthorizationServerMetadata"}}},
        }
    },
}


def document_auth(api: Api, app: Flask) -> None:
    """Add the OAuth endpoints and the key set to the document (they are plain Flask routes)."""
    spec: APISpec = api.spec
    for name, schema in TOKEN_SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.tag(
        {
            "name": OAUTH_TAG,
            "description": "Access tokens (client credentials; authorization code with PKCE for subscribers' "
            "apps), their revocation, their keys and the server's metadata.",
        }
    )
    documented = (
        (TOKEN_URL, {"post": TOKEN_OPERATION}),
        (REVOKE_URL, {"post": REVOKE_OPERATION}),
        (AUTHORIZE_URL, {"get": AUTHORIZE_OPERATION, "post": AUTHORIZE_STEP_OPERATION}),
        (JWKS_URL, {"get": JWKS_OPERATION}),
        (METADATA_URL, {"get": METADATA_OPERATION}),
    )
    for url, operations in documented:
        for method, operation in operations.items():
            rule = next(r for r in app.url_map.iter_rules() if r.rule == url and method.upper() in (r.methods or ()))
            # A copy: the document's plugins fill in each app's own answers (its rate limits).
            spec.path(rule=rule, operations={method: copy.deepcopy(operation)})


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ title }}</title>
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
</head>
<body>
  <noscript>This page needs JavaScript. The API document itself is at {{ spec_url }}.</noscript>
  <div id="swagger-ui" data-spec-url="{{ spec_url }}"></div>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script src="{{ asset('docs.js') }}"></script>
</body>
</html>
"""


def register_docs_page(app: Flask, *, spec_url: str = "/v1/openapi.json") -> None:
    """Serve the API reference at `/v1/docs`, its assets from this package (no network needed)."""
    versions: dict[str, str] = {}

    def asset(name: str) -> str:
        if name not in versions:
            versions[name] = hashlib.sha256((DOCS_FOLDER / name).read_bytes()).hexdigest()[:12]
        return url_for("docs_asset", name=name, v=versions[name])

    def page() -> str:
        """The API reference: the OpenAPI document rendered by Swagger UI."""
        return render_template_string(PAGE, title=app.config["API_TITLE"], spec_url=spec_url, asset=asset)

    def docs_asset(name: str) -> Response:
        """Swagger UI's files, vendored in this package."""
        return send_from_directory(DOCS_FOLDER, name, max_age=86400)

    app.add_url_rule("/v1/docs", "docs_page", page, methods=["GET"])
    app.add_url_rule("/v1/docs/assets/<path:name>", "docs_asset", docs_asset, methods=["GET"])


NCHF_TAG = "nchf"
# Each Nchf refusal the engine can answer, by route: (status, code, cause, what it means).
NCHF_REFUSALS: tuple[tuple[int, str, str, str], ...] = (
    (400, "charging_request_invalid", "CHARGING_FAILED", "The request names no subscriber, or cannot be charged."),
    (403, "charging_user_unknown", "USER_UNKNOWN", "No line of the platform has this subscriber identifier."),
    (403, "charging_service_denied", "END_USER_REQUEST_DENIED", "The line may not use this service now."),
    (403, "charging_not_applicable", "CHARGING_NOT_APPLICABLE", "The service is not charged for this line."),
    (503, "charging_busy", "", "The line's balance kept changing under the request; send it again."),
)


def document_nchf(api: Api, app: Flask) -> None:
    """Add the Nchf_ConvergedCharging operations (served by `NchfFront`, beside the Flask app) to the document."""
    from mvne.charging.online import api as nchf
    from mvne.charging.online.front import CREATE_ROUTE, RELEASE_ROUTE, UPDATE_ROUTE

    spec: APISpec = api.spec
    spec.tag(
        {
            "name": NCHF_TAG,
            "description": "Online charging for a host network's 5G core (3GPP TS 32.291 Nchf_ConvergedCharging). "
            "Fields follow the specification's names; fields this platform does not use are accepted and ignored.",
        }
    )
    docs = OperationDocs(app)
    reference = {
        "name": "reference",
        "in": "path",
        "required": True,
        "description": "The session's ChargingDataRef, the last segment of the Location its create answered.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{1,100}$"},
    }
    routes = (
        (
            CREATE_ROUTE,
            nchf.CREATE_EXAMPLE,
            201,
            "Open a charging data session: units granted per rating group; the Location names the session.",
        ),
        (
            UPDATE_ROUTE,
            nchf.UPDATE_EXAMPLE,
            200,
            "Report the units used since the last request and get more, per rating group.",
        ),
        (
            RELEASE_ROUTE,
            nchf.RELEASE_EXAMPLE,
            204,
            "End the session: the units used are charged, what was granted and not used goes back.",
        ),
    )
    for route, example, status, summary in routes:
        path = route.replace("<reference>", "{reference}")
        answer: dict[str, Any] = {"description": {201: "Created", 200: "OK", 204: "No Content"}[status]}
        if status != 204:
            answer["content"] = {"application/json": {"schema": nchf.ChargingDataResponseSchema}}
        if status == 201:
            answer["headers"] = {
                "Location": {
                    "description": "The session's URL; its last segment is the reference.",
                    "schema": {"type": "string", "format": "uri"},
                }
            }
        by_status: dict[int, list[dict[str, Any]]] = {}
        kit = [
            "malformed_body",
            "unauthenticated",
            "insufficient_scope",
            "operator_required",
            "payload_too_large",
            "validation_failed",
            "json_too_deep",
        ]
        for code in kit:
            code_status, detail = KIT_PROBLEMS[code]
            fields = (
                {"invocationSequenceNumber": ["Missing data for required field."]}
                if code == "validation_failed"
                else None
            )
            by_status.setdefault(code_status, []).append(
                problem_example(code_status, code, detail=detail, errors=fields)
            )
        by_status.setdefault(415, []).append(
            problem_example(
                415, "unsupported_media_type", detail="The body must be JSON (Content-Type: application/json)."
            )
        )
        refusals = [r for r in NCHF_REFUSALS if route == CREATE_ROUTE or r[1] != "charging_request_invalid"]
        if route != CREATE_ROUTE:
            refusals.append(
                (404, "charging_session_not_found", "SESSION_NOT_FOUND", "No open session has this reference.")
            )
        for code_status, code, cause, detail in refusals:
            refusal = problem_example(code_status, code, detail=detail)
            if cause:
                refusal["cause"] = cause
            by_status.setdefault(code_status, []).append(refusal)
        operation: dict[str, Any] = {
            "tags": [NCHF_TAG],
            "summary": summary.split(":")[0],
            "description": f"{summary}\n\nNeeds a token of a platform operator's client with the scope `{nchf.SCOPE}`. "
            "Refusals carry 3GPP's `cause` beside the `code`.",
            "operationId": {CREATE_ROUTE: "nchf_create", UPDATE_ROUTE: "nchf_update", RELEASE_ROUTE: "nchf_release"}[
                route
            ],
            "security": [{"oauth2": [nchf.SCOPE]}, {"bearer": [nchf.SCOPE]}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": nchf.ChargingDataRequestSchema, "example": example}},
            },
            "responses": {
                str(status): answer,
                **{str(s): docs.problem_response(s, examples) for s, examples in sorted(by_status.items())},
            },
        }
        for response in operation["responses"].values():
            if PROBLEM_JSON in response.get("content", {}):
                response["content"][PROBLEM_JSON]["schema"] = nchf.ChargingProblemSchema
        # Not the app's own rule: a rule of a map of its own, for the document's path and its parameter.
        rule = next(Map([Rule(route, methods=["POST"], endpoint=operation["operationId"], defaults={})]).iter_rules())
        spec.path(rule=rule, operations={"post": operation}, parameters=[reference] if "{reference}" in path else [])
