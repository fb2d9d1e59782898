"""Who is calling, and the decorator every API view wears: a valid bearer token with the view's scope.

The token server and its keys are wired by the app that registers them; views below the platform
only need the checks here, which find the app's protector in `current_app.extensions`.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
from flask import current_app, g, request

from mvne.infra.logging import bind_context
from mvne.infra.web import idempotency

F = TypeVar("F", bound=Callable[..., Any])

AUTH_EXTENSION = "mvne.auth"


# What kind of caller a principal is.
KIND_CLIENT = "client"  # a tenant's back end (client credentials)
KIND_OPERATOR = "operator"  # a platform operator's client
KIND_STAFF = "staff"  # a tenant's staff user, in a console session
KIND_SUBSCRIBER = "subscriber"  # an end subscriber, through one of the tenant's apps (authorization code)

# The access-token claim naming the subscriber a token was issued to (absent for client credentials).
SUBSCRIBER_CLAIM = "subscriber_id"
# The access-token claim naming a subscriber's sign-in (its refresh-token family): revoking the sign-in
# ends its access tokens from the next request.
SESSION_CLAIM = "sid"
# The app extension a console-session authenticator registers under: a callable returning the request's
# Principal from its session cookie (checking CSRF on unsafe methods and the tenant's standing, raising a
# problem when either fails), or None when the request carries no session.
SESSION_EXTENSION = "mvne.console_session"
# The console session's cookie, and the header that must repeat the session's CSRF token on unsafe methods.
SESSION_COOKIE = "mvne_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's client, staff user or subscriber (tenant_id set), or a platform operator.

    `client_id` is the OAuth client the call came through (for staff sessions, the session's id);
    `subject` is the person behind it: the staff user or the subscriber account (None for clients).
    """

    client_id: str
    tenant_id: str | None
    scopes: frozenset[str]
    kind: str = KIND_CLIENT
    subject: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None

    @property
    def actor_id(self) -> str:
        """Who to name in the audit log: the person when there is one, else the client."""
        return self.subject or self.client_id


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise RuntimeError("no principal: the view is missing @require")
    return principal


@dataclass(frozen=True)
class CallerStanding:
    """What the database says of a token's client right now: revoked or not, and its tenant's status.

    For a subscriber's token, `subscriber_refused` says its account is closed or its sign-in was revoked.
    """

    client_revoked: bool
    tenant_status: str | None = None
    suspended_at: dt.datetime | None = None
    subscriber_refused: bool = False


class _StandingCache:
    """Clients' standings remembered for a short while, for the routes that ask for it (`standing_ttl_s`)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reading = threading.Lock()
        self.found: dict[str, tuple[float, CallerStanding | None]] = {}

    def get(self, auth: Any, client_id: str, ttl_s: float, db: Any = None) -> CallerStanding | None:
        now = time.monotonic()
        hit = self.found.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        # One thread reads a standing gone stale; the others believe the last one until it has (a few ms more).
        if hit is not None and not self.reading.acquire(blocking=False):
            return hit[1]
        try:
            standing: CallerStanding | None = (
                auth.standing(client_id) if db is None else auth.standing(client_id, db=db)
            )
        finally:
            if hit is not None:
                self.reading.release()
        with self.lock:
            if len(self.found) >= self.LIMIT:
                self.found.clear()
            self.found[client_id] = (time.monotonic() + ttl_s, standing)
        return standing


_STANDINGS = _StandingCache()


class _VerifiedTokens:
    """Bearer tokens this process has verified, until they expire: a machine caller sends the same token thousands
    of times, and its signature cannot change (revocation is the standing's business, checked apart)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.found: dict[str, tuple[float, Any]] = {}

    def get(self, header: str) -> Any:
        hit = self.found.get(header)
        if hit is None or hit[0] <= time.time():
            return None
        return hit[1]

    def put(self, header: str, token: Any) -> None:
        expires = token.get("exp")
        if not header or not isinstance(expires, int | float):
            return
        with self.lock:
            if len(self.found) >= self.LIMIT:
                self.found.clear()
            self.found[header] = (float(expires), token)


_TOKENS = _VerifiedTokens()


def _bearer_token(protector: Any, *, remembered: bool) -> Any:
    """The request's verified bearer token (raises Authlib's errors); `remembered`: from `_TOKENS` when there."""
    if not remembered:
        return protector.acquire_token(None)
    header = request.headers.get("Authorization", "")
    token = _TOKENS.get(header)
    if token is None:
        token = protector.acquire_token(None)
        _TOKENS.put(header, token)
    else:
        g.authlib_server_oauth2_token = token
    return token


def authenticate(scope: str | None, *, standing_ttl_s: float = 0) -> Principal:
    """Check the request's bearer token, its client's standing, then `scope`; remember the caller in `g`.

    The standing is one lookup (the app's `standing` function) made before the scope check, so a revoked
    client's token is 401 whatever it asks for. With `standing_ttl_s` a client's standing read in this
    process is believed that long (a revocation then takes up to that long here), and a token's signature, once
    verified, until the token expires: for machine callers whose every request must not wait for a database.
    """
    auth = current_app.extensions[AUTH_EXTENSION]
    protector = auth.protector
    session_auth = current_app.extensions.get(SESSION_EXTENSION)
    if session_auth is not None and not request.headers.get("Authorization"):
        # A console session (cookie): the authenticator checks the session, its CSRF token and the
        # tenant's standing; the scope (the staff user's role grants a set of scopes) is checked here.
        session_principal: Principal | None = session_auth()
        if session_principal is not None:
            if scope and scope not in session_principal.scopes:
                protector.raise_error_response(InsufficientScopeError(), scope)
            return _remember(session_principal)
    try:
        token = _bearer_token(protector, remembered=standing_ttl_s > 0)
        subscriber = token.get(SUBSCRIBER_CLAIM)
        standing: CallerStanding | None
        if subscriber:
            standing = auth.standing(
                str(token["client_id"]), subscriber=str(subscriber), session=token.get(SESSION_CLAIM)
            )
        elif standing_ttl_s > 0:
            standing = _STANDINGS.get(auth, str(token["client_id"]), standing_ttl_s)
        else:
            standing = auth.standing(str(token["client_id"]))
        if standing is None or standing.client_revoked or standing.subscriber_refused:
            raise InvalidTokenError()
        scopes = frozenset(str(token.get("scope") or "").split())
        if scope and scope not in scopes:
            raise InsufficientScopeError()
    except OAuth2Error as error:
        protector.raise_error_response(error, scope)
        raise
    tenant_id = token.get("tenant_id")
    kind = KIND_SUBSCRIBER if subscriber else (KIND_OPERATOR if tenant_id is None else KIND_CLIENT)
    principal = Principal(
        client_id=str(token["client_id"]), tenant_id=tenant_id, scopes=scopes, kind=kind, subject=subscriber
    )
    # Suspension stops the tenant's own clients; its subscribers keep their self-service.
    if principal.tenant_id is not None and kind != KIND_SUBSCRIBER:
        refuse_if_suspended(standing)
    return _remember(principal)


@dataclass(frozen=True)
class _HeadersOnly:
    """What Authlib's protector reads of a request: its headers."""

    headers: dict[str, str]


def bearer_principal(auth: Any, db: Any, authorization: str, scope: str, *, standing_ttl_s: float) -> Principal:
    """The caller of a request served beside the Flask app (a protocol's front), from its `Authorization` header.

    The same checks as `authenticate` for a machine caller: the bearer token verified (remembered until it
    expires), its client's standing read from `db` (believed `standing_ttl_s`), then `scope`; a suspended
    tenant's client is refused. Raises the same 401 and 403 problems. Console sessions and subscribers' tokens
    have no place here.
    """
    from mvne.infra.web.problems import ProblemError

    try:
        token = _TOKENS.get(authorization)
        if token is None:
            token = auth.protector.validate_request(None, _HeadersOnly({"Authorization": authorization}))
            _TOKENS.put(authorization, token)
        standing = _STANDINGS.get(auth, str(token["client_id"]), standing_ttl_s, db)
        if standing is None or standing.client_revoked:
            raise InvalidTokenError()
    except OAuth2Error:
        challenge = 'Bearer realm="mvne"' + (', error="invalid_token"' if authorization else "")
        raise ProblemError(
            401, "unauthenticated", "A valid bearer token is required.", headers={"WWW-Authenticate": challenge}
        ) from None
    scopes = frozenset(str(token.get("scope") or "").split())
    if token.get(SUBSCRIBER_CLAIM) or scope not in scopes:
        raise ProblemError(
            403,
            "insufficient_scope",
            f"The token lacks the scope this operation needs: {scope}.",
            headers={"WWW-Authenticate": f'Bearer realm="mvne", error="insufficient_scope", scope="{scope}"'},
        )
    tenant_id = token.get("tenant_id")
    principal = Principal(
        client_id=str(token["client_id"]),
        tenant_id=tenant_id,
        scopes=scopes,
        kind=KIND_OPERATOR if tenant_id is None else KIND_CLIENT,
    )
    if tenant_id is not None:
        refuse_if_suspended(standing)
    bind_context(tenant_id=tenant_id, client_id=principal.client_id)
    return principal


def _remember(principal: Principal) -> Principal:
    g.principal = principal
    bind_context(tenant_id=principal.tenant_id, client_id=principal.client_id)
    return principal


def refuse_if_suspended(standing: CallerStanding) -> None:
    """403 `tenant_suspended` when the caller's tenant is not active.

    Suspension stops a tenant's clients, not its subscribers: the network, usage files and queued jobs
    do not pass through here. A tenant being offboarded or offboarded is refused the same way.
    """
    from mvne.infra.web.problems import ProblemError

    if standing.tenant_status in (None, "active", "onboarding"):
        return
    since = f" since {standing.suspended_at:%Y-%m-%dT%H:%M:%SZ}" if standing.suspended_at is not None else ""
    raise ProblemError(
        403,
        "tenant_suspended",
        f"This tenant's API access is {standing.tenant_status}{since}. Its subscribers keep service; to restore "
        "access, contact platform support through your account manager or the operators' support desk.",
    )


def public(view: F) -> F:
    """Mark a view any caller may use without a token (sign-up, login, accepting an invitation).

    It is documented with `security: []`; it reads no principal, so it opens its own session
    (`mvne.infra.web.context.public_db_session`).
    """
    view._mvne_public = True  # type: ignore[attr-defined]
    return view


def require(
    scope: str, *, tenant: bool = True, kinds: tuple[str, ...] | None = None, standing_ttl_s: float = 0
) -> Callable[[F], F]:
    """Protect a view: a valid token with `scope`; `tenant=False` for platform-operator routes.

    `kinds` narrows a tenant route to some kinds of caller (`KIND_SUBSCRIBER` for `/v1/me`); others get 403.
    `standing_ttl_s`: see `authenticate`.
    """
    from mvne.infra.web.context import runtime
    from mvne.infra.web.problems import ProblemError

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate(scope, standing_ttl_s=standing_ttl_s)
            if tenant and principal.tenant_id is None:
                raise ProblemError(403, "tenant_required", "This operation is for a tenant's API client.")
            if not tenant and principal.tenant_id is not None:
                raise ProblemError(403, "operator_required", "This operation is for platform operators.")
            if kinds is not None and principal.kind not in kinds:
                raise ProblemError(
                    403, "caller_kind_refused", f"This operation is for callers of kind: {', '.join(kinds)}."
                )
            if request.method == "POST" and idempotency.HEADER in request.headers:
                with runtime().db.transaction(platform=True) as session:
                    replay = idempotency.check_replay(session, principal.client_id, principal.tenant_id)
                if replay is not None:
                    return replay
            result = view(*args, **kwargs)
            if not tenant and request.method == "GET":
                _audit_operator_read(kwargs)
            return result

        wrapper._mvne_scope = scope  # type: ignore[attr-defined]
        wrapper._mvne_tenant = tenant  # type: ignore[attr-defined]
        wrapper._mvne_kinds = kinds  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _audit_operator_read(view_args: dict[str, Any]) -> None:
    """An operator's read is written to the audit log with the request's transaction (so only if it succeeds).

    The tenant is the one the route names (`/tenants/<tenant_id>`) or the one the query filters on (`?tenant=`);
    a platform-wide read (every tenant's clients, job health) is recorded without a tenant.
    """
    from mvne.infra.web import audit
    from mvne.infra.web.context import db_session

    session = db_session()
    actor: audit.AuditActor = session.info[audit.ACTOR_INFO]
    tenant = view_args.get("tenant_id") or request.args.get("tenant") or None
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    object_id = ",".join(str(v) for v in view_args.values()) or "*"
    audit.record_read(session, actor, route=rule, object_id=object_id, tenant_id=str(tenant)[:40] if tenant else None)
