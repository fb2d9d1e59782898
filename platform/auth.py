"""OAuth2 in one place: the token endpoint (client credentials), signed JWT access tokens, JWKS,
and the protector that checks a token and its scopes on every API route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator, JWTBearerTokenValidator
from flask import Flask, Response, jsonify, request
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from mvne.infra.web.auth import AUTH_EXTENSION, CallerStanding
from mvne.infra.web.context import runtime
from mvne.infra.web.problems import ProblemError
from mvne.tenants.models import ApiClient, Tenant
from mvne.tenants.service import record_token_issued

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
    "audit:read",
    "webhooks:read",
    "webhooks:write",
    "api_clients:read",
    "api_clients:write",
    "tenant:read",
    "tenant:write",
    "staff:read",
    "staff:write",
)
OPERATOR_SCOPES = ("tenants:read", "tenants:write", "operations:read", "operations:write")


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

    def validate_token(self, token: Any, scopes: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        """A well-signed, unexpired token, then its scopes (the client's standing is checked by the web kit)."""
        try:
            token.validate()
        except JoseError as exc:
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes) from exc
        super().validate_token(token, scopes, request, *args, **kwargs)


def caller_standing(client_id: str) -> CallerStanding | None:
    """One lookup per request: the client (None if unknown), whether it is revoked, and its tenant's status."""
    with runtime().db.transaction(platform=True) as session:
        row = session.execute(
            select(ApiClient.revoked_at, Tenant.status, Tenant.suspended_at)
            .outerjoin(Tenant, Tenant.id == ApiClient.tenant_id)
            .where(ApiClient.id == client_id)
        ).first()
    if row is None:
        return None
    return CallerStanding(row.revoked_at is not None, row.status, row.suspended_at)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Protector(ResourceProtector):
    def raise_error_response(self, error: OAuth2Error, scope: str | None = None) -> None:
        """Answer as RFC 6750 says: the challenge names the error and, for 403, the scope needed."""
        status = error.status_code or 401
        if status == 403:
            raise ProblemError(
                403,
                "insufficient_scope",
                f"The token lacks the scope this operation needs: {scope}." if scope else "The token lacks a scope.",
                headers={"WWW-Authenticate": f'Bearer realm="mvne", error="insufficient_scope", scope="{scope or ""}"'},
            )
        challenge = 'Bearer realm="mvne"'
        if request.headers.get("Authorization"):
            challenge += ', error="invalid_token"'
        raise ProblemError(
            401, "unauthenticated", "A valid bearer token is required.", headers={"WWW-Authenticate": challenge}
        )


@dataclass(frozen=True)
class AuthState:
    server: AuthorizationServer
    protector: Protector
    keys: Keys
    standing: Callable[[str], CallerStanding | None]


def _query_client(client_id: str) -> ApiClient | None:
    with runtime().db.transaction(platform=True) as session:
        client = session.get(ApiClient, client_id)
        if client is not None:
            session.expunge(client)
        return client


def _save_token(token: dict[str, Any], request: Any) -> None:
    """Access tokens are self-contained JWTs, not stored; the client's last use (and a rehash) is."""
    client: ApiClient = request.client
    with runtime().db.transaction(platform=True) as session:
        record_token_issued(session, client.id, rehash=getattr(client, "pending_rehash", None))


def init_auth(app: Flask, *, issuer: str, private_pem: str, ttl: int) -> None:
    """Wire the token endpoint, JWKS and the protector into the app."""
    keys = Keys(private_pem)
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(ClientCredentialsGrant)
    server.register_token_generator("client_credentials", TokenGenerator(issuer, keys, ttl))
    protector = Protector()
    protector.register_token_validator(TokenValidator(issuer, keys))
    app.extensions[AUTH_EXTENSION] = AuthState(server, protector, keys, caller_standing)

    @app.post("/oauth/token")
    def issue_token() -> Response:
        """Exchange client credentials for a short-lived signed access token."""
        return server.create_token_response()

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        """The public keys that verify our access tokens."""
        return jsonify(keys.public_set.as_dict(private=False))
