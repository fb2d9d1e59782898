"""Console sessions as callers of the API: the `mvne_session` cookie becomes a staff principal.

Registered as the app's session authenticator (`SESSION_EXTENSION`), which `require` consults when a
request carries no bearer token. One query finds the session with its user and tenant; unsafe methods
must repeat the session's CSRF token in `X-CSRF-Token` (the cookie alone is what a forged cross-site
request would carry, so it never suffices to change anything).
"""

from __future__ import annotations

from flask import Flask, request

from mvne.infra.db import utcnow
from mvne.infra.settings import Settings
from mvne.infra.web.auth import (
    CSRF_HEADER,
    KIND_STAFF,
    SESSION_COOKIE,
    SESSION_EXTENSION,
    UNSAFE_METHODS,
    CallerStanding,
    Principal,
    refuse_if_suspended,
)
from mvne.infra.web.context import runtime
from mvne.infra.web.problems import ProblemError
from mvne.tenants import roles, staff
from mvne.tenants.staff_api import session_cookie


def _expired(settings: Settings, detail: str) -> ProblemError:
    # The cookie is cleared with the answer: the browser stops sending a session that is over.
    return ProblemError(401, "session_expired", detail, headers={"Set-Cookie": session_cookie(settings, "", 0)})


def authenticate_session() -> Principal | None:
    """The staff principal of the request's session cookie; None without a cookie (the bearer token decides)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    rt = runtime()
    now = utcnow()
    with rt.db.transaction(platform=True) as session:
        standing = staff.session_standing(session, token[:200])
        live = standing is not None and not standing.revoked and standing.expires_at > now
        if live and standing is not None and now - standing.last_seen_at >= staff.SEEN_GRANULARITY:
            staff.touch_session(session, standing.session_id, now)
    settings = rt.settings
    if standing is None or standing.revoked or standing.expires_at <= now:
        raise _expired(settings, "The console session is unknown, over or logged out: log in again.")
    if standing.user_status != staff.ACTIVE:
        raise _expired(settings, "This staff account is disabled: ask an owner or admin of the tenant.")
    if request.method in UNSAFE_METHODS and not standing.csrf_matches(request.headers.get(CSRF_HEADER)):
        raise ProblemError(
            403,
            "csrf_failed",
            f"Changes made in a console session must send the session's CSRF token as the {CSRF_HEADER} header "
            "(answered at login).",
        )
    refuse_if_suspended(CallerStanding(False, standing.tenant_status, standing.suspended_at))
    return Principal(
        client_id=standing.session_id,
        tenant_id=standing.tenant_id,
        scopes=roles.scopes_of(standing.role),
        kind=KIND_STAFF,
        subject=standing.staff_user_id,
    )


def init_console_sessions(app: Flask) -> None:
    """Let staff sessions call the API, with their role's scopes."""
    app.extensions[SESSION_EXTENSION] = authenticate_session
