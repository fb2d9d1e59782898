"""OAuth2 in one place: the token endpoint (client credentials), signed JWT access tokens, JWKS,
and the protector that checks a token and its scopes on every API route.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator, JWTBearerTokenValidator
from flask import Flask, Response, current_app, g, jsonify, request
from joserfc.jwk import KeySet, RSAKey

from mvne.platform import idempotency
from mvne.platform.errors import ProblemError
from mvne.tenants.models import ApiClient

F = TypeVar("F", bound=Callable[..., Any])

AUDIENCE = "mvne-api"

# What a tenant's back end may be granted, and what only platform operators hold.
TENANT_SCOPES = (
    "offers:read",
    "offers:write",
    "customers:read",
    "customers:write",
    "subscriptions:read",
    "subscriptions:write",
    "usage:write",
    "billing:read",
    "billing:write",
    "invoices:read",
    "events:read",
    "webhooks:read",
    "webhooks:write",
)
OPERATOR_SCOPES = ("tenants:read", "tenants:write", "operations:read", "operations:write")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's client (tenant_id set) or a platform operator."""

    client_id: str
    tenant_id: str | None
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


class Keys:
    """The signing key and the published key set."""

    def __init__(self, private_pem: str) -> None:
        self.private = RSAKey.import_key(private_pem, parameters={"use": "sig", "alg": "RS256"})
        self.private.ensure_kid()
        public = RSAKey.import_key(self.private.as_dict(private=False))
        public.ensure_kid()
        self.public_set = KeySet([public])
        self.private_set = KeySet([self.private])


class TokenGenerator(JWTBearerTokenGenerator):
    def __init__(self, issuer: str, keys: Keys, ttl: int) -> None:
        super().__init__(issuer=issuer, alg="RS256", expires_generator=lambda client, grant_type: ttl)
        self.keys = keys

    def get_jwks(self) -> KeySet:
        return self.keys.private_set

    def get_audiences(self, client: ApiClient, user: Any, scope: str) -> str:
        # Authlib defaults `aud` to the client id; our resource server is the API itself.
        return AUDIENCE

    def get_extra_claims(self, client: ApiClient, grant_type: str, user: Any, scope: str) -> dict[str, Any]:
        return {"tenant_id": client.tenant_id} if client.tenant_id else {}


class TokenValidator(JWTBearerTokenValidator):
    def __init__(self, issuer: str, keys: Keys) -> None:
        super().__init__(issuer=issuer, resource_server=AUDIENCE)
        self.keys = keys

    def get_jwks(self) -> KeySet:
        return self.keys.public_set


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Protector(ResourceProtector):
    def raise_error_response(self, error: OAuth2Error) -> None:
        status = error.status_code or 401
        if status == 403:
            raise ProblemError(403, "insufficient_scope", "The token lacks a scope this operation needs.")
        raise ProblemError(
            401,
            "unauthenticated",
            "A valid bearer token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="mvne"'},
        )


def _query_client(client_id: str) -> ApiClient | None:
    from mvne.platform.context import runtime

    with runtime().db.transaction(platform=True) as session:
        client = session.get(ApiClient, client_id)
        if client is not None:
            session.expunge(client)
        return client


def _save_token(token: dict[str, Any], request: Any) -> None:
    # Access tokens are self-contained JWTs; nothing to store.
    return None


def init_auth(app: Flask, *, issuer: str, private_pem: str, ttl: int) -> None:
    """Wire the token endpoint, JWKS and the protector into the app."""
    keys = Keys(private_pem)
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(ClientCredentialsGrant)
    server.register_token_generator("client_credentials", TokenGenerator(issuer, keys, ttl))
    protector = Protector()
    protector.register_token_validator(TokenValidator(issuer, keys))
    app.extensions["mvne.auth"] = (server, protector, keys)

    @app.post("/oauth/token")
    def issue_token() -> Response:
        """Exchange client credentials for a short-lived signed access token."""
        return server.create_token_response()

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        """The public keys that verify our access tokens."""
        return jsonify(keys.public_set.as_dict(private=False))


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise RuntimeError("no principal: the view is missing @require")
    return principal


def authenticate(scope: str | None) -> Principal:
    """Check the request's bearer token (and `scope` when given); remember the caller in `g`."""
    _, protector, _ = current_app.extensions["mvne.auth"]
    try:
        token = protector.acquire_token([scope] if scope else None)
    except OAuth2Error as error:
        protector.raise_error_response(error)
        raise
    scopes = frozenset(str(token.get("scope") or "").split())
    principal = Principal(client_id=str(token["client_id"]), tenant_id=token.get("tenant_id"), scopes=scopes)
    g.principal = principal
    from mvne.infra.logging import bind_context

    bind_context(tenant_id=principal.tenant_id, client_id=principal.client_id)
    return principal


def require(scope: str, *, tenant: bool = True) -> Callable[[F], F]:
    """Protect a view: a valid token with `scope`; `tenant=False` for platform-operator routes."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate(scope)
            if tenant and principal.tenant_id is None:
                raise ProblemError(403, "tenant_required", "This operation is for a tenant's API client.")
            if not tenant and principal.tenant_id is not None:
                raise ProblemError(403, "operator_required", "This operation is for platform operators.")
            if request.method == "POST" and request.headers.get(idempotency.HEADER):
                from mvne.platform.context import runtime

                with runtime().db.transaction(platform=True) as session:
                    replay = idempotency.check_replay(session, principal.client_id, principal.tenant_id)
                if replay is not None:
                    return replay
            return view(*args, **kwargs)

        wrapper._mvne_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
