"""A tenant's apps: public OAuth clients its subscribers sign in through (authorization code with PKCE).

An app holds no secret (it runs on a phone or in a browser, where a secret cannot be kept); it proves
each sign-in with PKCE instead, and gets back only to the redirect URIs registered here, compared exactly.
A redirect URI is one of (RFC 8252 for native apps):
- `https://...`, any host;
- `http://127.0.0.1:<port>/...`, `http://[::1]...` or `http://localhost...`: a loopback address a native app
  listens on;
- a private-use scheme named after a domain the app's maker owns, `com.nimbus.app:/callback`.
Never a fragment, never user credentials in the URI.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from mvne.infra.ids import new_id
from mvne.tenants.errors import ApiClientRevoked, AppNotFound, InvalidRedirectUri
from mvne.tenants.models import PUBLIC, ApiClient
from mvne.tenants.service import record_event

# What an app may be granted: its subscriber's own data, nothing of the tenant's.
SUBSCRIBER_SCOPES = ("me:read", "me:write")
# A public client's secret hash: no secret hashes to it, and public clients are never asked for one.
NO_SECRET = "!public-client"  # noqa: S105 (a marker, not a secret)
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2000
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# RFC 3986 scheme syntax, with at least one dot: a reversed domain name (RFC 8252 7.1).
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+$")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\<>\"{}|^`]")


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be a redirect URI, or None when it can."""
    if not uri or len(uri) > MAX_REDIRECT_URI_LENGTH:
        return f"must be 1 to {MAX_REDIRECT_URI_LENGTH} characters"
    if _FORBIDDEN.search(uri):
        return 'must not contain spaces, control characters or any of \\ < > " { } | ^ `'
    if "#" in uri:
        return "must not contain a fragment (#)"
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        return "is not a valid URI"
    if parts.username is not None or parts.password is not None:
        return "must not contain user credentials"
    return _scheme_problem(parts.scheme.lower(), hostname, uri[len(parts.scheme) + 1 :])


def _scheme_problem(scheme: str, hostname: str | None, rest: str) -> str | None:
    if scheme == "https":
        return None if hostname else "must name a host (https://host/path)"
    if scheme == "http":
        ok = hostname in LOOPBACK_HOSTS
        return None if ok else "http is allowed only for loopback (127.0.0.1, [::1] or localhost); use https"
    if _PRIVATE_SCHEME.fullmatch(scheme) and rest:
        return None
    return (
        "must be https, loopback http, or a private-use scheme named after a domain you own (com.example.app:/callback)"
    )


def checked_redirect_uris(uris: list[str]) -> list[str]:
    """The URIs, deduplicated in their order; 422 `invalid_redirect_uri` naming each one that is refused."""
    problems = [f"{uri!r} {why}." for uri in uris if (why := redirect_uri_problem(uri)) is not None]
    if not uris:
        problems.append("Register at least one redirect URI.")
    if len(uris) > MAX_REDIRECT_URIS:
        problems.append(f"Register at most {MAX_REDIRECT_URIS} redirect URIs.")
    if problems:
        raise InvalidRedirectUri("Invalid redirect URI: " + " ".join(problems), errors={"redirect_uris": problems})
    return list(dict.fromkeys(uris))


def create_app(session: Session, *, tenant_id: str, name: str, redirect_uris: list[str]) -> ApiClient:
    """Register a public client for the tenant's subscribers; its id is the OAuth `client_id`."""
    uris = checked_redirect_uris(redirect_uris)
    app = ApiClient(
        id=new_id("cli"),
        tenant_id=tenant_id,
        name=name,
        secret_hash=NO_SECRET,
        scopes=" ".join(SUBSCRIBER_SCOPES),
        kind=PUBLIC,
        redirect_uris=uris,
    )
    session.add(app)
    session.flush()
    data = {"name": name, "kind": PUBLIC, "scopes": list(SUBSCRIBER_SCOPES), "redirect_uris": uris}
    record_event(session, "api_client.created", app.id, data, tenant_id=tenant_id)
    return app


def get_app(session: Session, tenant_id: str, app_id: str, *, lock: bool = False) -> ApiClient:
    """One of the tenant's apps; a back-end client, another tenant's app or a missing one is not found alike."""
    app = session.get(ApiClient, app_id, with_for_update=lock)
    if app is None or app.tenant_id != tenant_id or app.kind != PUBLIC:
        raise AppNotFound(f"No app {app_id}.")
    return app


def update_app(
    session: Session, app: ApiClient, *, name: str | None = None, redirect_uris: list[str] | None = None
) -> ApiClient:
    """Rename an app or replace its redirect URIs; codes already issued keep the URI they were issued for."""
    if app.revoked_at is not None:
        raise ApiClientRevoked(f"App {app.id} is revoked; it cannot be changed.")
    changes: dict[str, object] = {}
    if redirect_uris is not None:
        app.redirect_uris = checked_redirect_uris(redirect_uris)
        changes["redirect_uris"] = app.redirect_uris
    if name is not None:
        app.name = name
        changes["name"] = name
    session.flush()
    if changes and app.tenant_id is not None:
        record_event(session, "api_client.updated", app.id, changes, tenant_id=app.tenant_id)
    return app
