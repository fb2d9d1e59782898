"""OAuth2 in one place: the token endpoint (client credentials; and, for the tenants' apps, authorization code
and refresh token, see `mvne.platform.subscriber_oauth`), signed JWT access tokens, JWKS, and the protector
that checks a token and its scopes on every API route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator, JWTBearerTokenValidator
from flask import Flask, Response, jsonify, request
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import and_, exists, select

from mvne.infra.db import Database
from mvne.infra.web.auth import AUTH_EXTENSION, SESSION_CLAIM, SUBSCRIBER_CLAIM, CallerStanding
from mvne.infra.web.context import runtime
from mvne.infra.web.problems import ProblemError
from mvne.platform.subscriber_oauth import SubscriberGrant, init_subscriber_auth
from mvne.tenants import roles
from mvne.tenants.apps import SUBSCRIBER_SCOPES
from mvne.tenants.models import ApiClient, RefreshToken, SubscriberAccount, Tenant
from mvne.tenants.service import record_token_issued
from mvne.tenants.subscribers import ACTIVE

AUDIENCE = "mvne-api"

# What a tenant's back end may be granted (declared with the roles that hold them), and what only platform
# operators hold.
TENANT_SCOPES = roles.TENANT_SCOPES
# `charging:network` is a host network's core asking for credit (Nchf); give it to that client alone.
OPERATOR_SCOPES = ("tenants:read", "tenants:write", "operations:read", "operations:write", "charging:network")
# What a tenant's app may ask its subscribers for (authorization code), SUBSCRIBER_SCOPES, is the apps' own:
# their subscriber's data only (`mvne.tenants.apps`).


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
    def __init__(self, issuer: str, keys: Keys, ttl: int, *, refresh: bool = False) -> None:
        super().__init__(
            issuer=issuer,
            alg="RS256",
            expires_generator=lambda client, grant_type: ttl,
            refresh_token_generator=(lambda **kwargs: generate_token(48)) if refresh else None,
        )
        self.keys = keys

    def get_jwks(self) -> KeySet:
        return self.keys.private_set

    def get_audiences(self, client: ApiClient, user: Any, scope: str) -> str:
        # Authlib defaults `aud` to the client id; our resource server is the API itself.
        return AUDIENCE

    def get_extra_claims(self, client: ApiClient, grant_type: str, user: Any, scope: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"tenant_id": client.tenant_id} if client.tenant_id else {}
        if isinstance(user, SubscriberGrant):
            claims[SUBSCRIBER_CLAIM] = user.account_id
            claims[SESSION_CLAIM] = user.family_id
        return claims


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


def caller_standing(
    client_id: str, *, subscriber: str | None = None, session: str | None = None, db: Database | None = None
) -> CallerStanding | None:
    """One lookup per request: the client (None if unknown), whether it is revoked, and its tenant's status.

    For a subscriber's token, the same lookup says whether the account is still active in the client's
    tenant and whether the sign-in (`session`, a refresh-token family) was revoked.
    """
    stmt = (
        select(ApiClient.revoked_at, Tenant.status, Tenant.suspended_at)
        .outerjoin(Tenant, Tenant.id == ApiClient.tenant_id)
        .where(ApiClient.id == client_id)
    )
    if subscriber is not None:
        account_active = exists().where(
            and_(
                SubscriberAccount.id == subscriber,
                SubscriberAccount.tenant_id == ApiClient.tenant_id,
                SubscriberAccount.status == ACTIVE,
            )
        )
        revoked = exists().where(and_(RefreshToken.family_id == session, RefreshToken.revoked_at.is_not(None)))
        stmt = stmt.add_columns(account_active.label("account_active"), revoked.label("session_revoked"))
    with (db or runtime().db).transaction(platform=True) as found:
        row = found.execute(stmt).first()
    if row is None:
        return None
    refused = subscriber is not None and (session is None or not row.account_active or bool(row.session_revoked))
    return CallerStanding(row.revoked_at is not None, row.status, row.suspended_at, subscriber_refused=refused)


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
    standing: Callable[..., CallerStanding | None]


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
    subscriber_tokens = TokenGenerator(issuer, keys, ttl, refresh=True)
    for grant_type in ("authorization_code", "refresh_token"):
        server.register_token_generator(grant_type, subscriber_tokens)
    protector = Protector()
    validator = TokenValidator(issuer, keys)
    protector.register_token_validator(validator)
    app.extensions[AUTH_EXTENSION] = AuthState(server, protector, keys, caller_standing)
    scopes = (*SUBSCRIBER_SCOPES, *TENANT_SCOPES, *OPERATOR_SCOPES)
    init_subscriber_auth(app, server, issuer=issuer, scopes=scopes, token_validator=validator)

    @app.post("/oauth/token")
    def issue_token() -> Response:
        """Issue a short-lived signed access token: for client credentials, an authorization code or a refresh token."""
        return server.create_token_response()

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        """The public keys that verify our access tokens."""
        return jsonify(keys.public_set.as_dict(private=False))
