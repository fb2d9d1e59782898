"""Who is calling, and the decorator every API view wears: a valid bearer token with the view's scope.

The token server and its keys are wired by the app that registers them; views below the platform
only need the checks here, which find the app's protector in `current_app.extensions`.
"""

from __future__ import annotations

import datetime as dt
import functools
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


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's client (tenant_id set) or a platform operator."""

    client_id: str
    tenant_id: str | None
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise RuntimeError("no principal: the view is missing @require")
    return principal


@dataclass(frozen=True)
class CallerStanding:
    """What the database says of a token's client right now: revoked or not, and its tenant's status."""

    client_revoked: bool
    tenant_status: str | None = None
    suspended_at: dt.datetime | None = None


def authenticate(scope: str | None) -> Principal:
    """Check the request's bearer token, its client's standing, then `scope`; remember the caller in `g`.

    The standing is one lookup (the app's `standing` function) made before the scope check, so a revoked
    client's token is 401 whatever it asks for.
    """
    auth = current_app.extensions[AUTH_EXTENSION]
    protector = auth.protector
    try:
        token = protector.acquire_token(None)
        standing: CallerStanding | None = auth.standing(str(token["client_id"]))
        if standing is None or standing.client_revoked:
            raise InvalidTokenError()
        scopes = frozenset(str(token.get("scope") or "").split())
        if scope and scope not in scopes:
            raise InsufficientScopeError()
    except OAuth2Error as error:
        protector.raise_error_response(error, scope)
        raise
    principal = Principal(client_id=str(token["client_id"]), tenant_id=token.get("tenant_id"), scopes=scopes)
    g.principal = principal
    bind_context(tenant_id=principal.tenant_id, client_id=principal.client_id)
    if principal.tenant_id is not None:
        refuse_if_suspended(standing)
    return principal


def refuse_if_suspended(standing: CallerStanding) -> None:
    """403 `tenant_suspended` when the caller's tenant is not active.

    Suspension stops a tenant's clients, not its subscribers: the network, usage files and queued jobs
    do not pass through here. A tenant being offboarded or offboarded is refused the same way.
    """
    from mvne.infra.web.problems import ProblemError

    if standing.tenant_status in (None, "active"):
        return
    since = f" since {standing.suspended_at:%Y-%m-%dT%H:%M:%SZ}" if standing.suspended_at is not None else ""
    raise ProblemError(
        403,
        "tenant_suspended",
        f"This tenant's API access is {standing.tenant_status}{since}. Its subscribers keep service; to restore "
        "access, contact platform support through your account manager or the operators' support desk.",
    )


def require(scope: str, *, tenant: bool = True) -> Callable[[F], F]:
    """Protect a view: a valid token with `scope`; `tenant=False` for platform-operator routes."""
    from mvne.infra.web.context import runtime
    from mvne.infra.web.problems import ProblemError

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate(scope)
            if tenant and principal.tenant_id is None:
                raise ProblemError(403, "tenant_required", "This operation is for a tenant's API client.")
            if not tenant and principal.tenant_id is not None:
                raise ProblemError(403, "operator_required", "This operation is for platform operators.")
            if request.method == "POST" and idempotency.HEADER in request.headers:
                with runtime().db.transaction(platform=True) as session:
                    replay = idempotency.check_replay(session, principal.client_id, principal.tenant_id)
                if replay is not None:
                    return replay
            return view(*args, **kwargs)

        wrapper._mvne_scope = scope  # type: ignore[attr-defined]
        wrapper._mvne_tenant = tenant  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
