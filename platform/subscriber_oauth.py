"""Subscribers signing in to a tenant's apps: OAuth2 authorization code with PKCE, rotating refresh tokens,
revocation (RFC 7009), the server's metadata (RFC 8414), and the sign-in and consent page.

The app (a public client, see `mvne.tenants.apps`) sends the subscriber's browser to `/oauth/authorize`. The
client and its redirect URI are checked first: an unknown client or an unregistered URI gets an error page,
never a redirect (RFC 6749 4.1.2.1). PKCE with S256 is required; anything else is sent back to the app as
`invalid_request`. The page, in the tenant's colours, asks for the e-mail, then a password or a code
e-mailed on request, then consent, and sends the browser back with the code and the app's `state`.

Between steps the pending request lives in a signed, short-lived cookie; each form carries a CSRF token
bound to it. No JavaScript.

At the token endpoint the code is exchanged once, against the PKCE verifier, for a JWT access token
(`subscriber_id` and `sid` claims) and a refresh token. Each refresh retires the token used and returns a new
one of the same family; a retired token used again revokes the family, and so do a code used twice and
revocation. Access tokens of a revoked family are refused from the next request (the web kit's standing check).
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import secrets
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, Response, current_app, jsonify, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from mvne.infra.db import utcnow
from mvne.infra.storage import ObjectNotFound
from mvne.infra.web.auth import SESSION_CLAIM
from mvne.infra.web.context import runtime
from mvne.infra.web.guard import refusals_answered_by
from mvne.infra.web.problems import ProblemError
from mvne.platform.page_text import DEFAULT as DEFAULT_LANGUAGE
from mvne.platform.page_text import page_language, words
from mvne.tenants import settings as tenant_settings
from mvne.tenants import subscribers
from mvne.tenants.branding import DEFAULT_ACCENT, DEFAULT_PRIMARY, BrandView, brand_of
from mvne.tenants.models import ApiClient, SubscriberAccount, Tenant

log = logging.getLogger("mvne.oauth")

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path)
REVOKE_PATH = "/oauth/revoke"
METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"

# The authorization request's parameters kept between the page's steps.
OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
MAX_PARAM = {"redirect_uri": 2000, "state": 512, "scope": 200, "client_id": 64}
PENDING_COOKIE = "mvne_authorize"
PENDING_TTL_S = 600
MAX_COOKIE_BYTES = 3800
_PENDING_SALT = "mvne.oauth.pending"
_CSRF_SALT = "mvne.oauth.csrf"
# What each scope lets an app do, as the consent page says it.
# What each scope lets an app do, as the consent page says it (its words in `page_text`).
SCOPE_WORDING = {"me:read": "scope_me_read", "me:write": "scope_me_write"}
GONE_STATUSES = ("offboarding", "offboarded")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_VSCHARS = re.compile(r"[\x20-\x7e]*")
LOGO_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/svg+xml")
MAX_LOGO_BYTES = 256 * 1024
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    # Scripts never run; the consent must not be framed (clickjacking); no referrer leaks the request.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


# What Authlib passes around --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberGrant:
    """The resource owner of a token: the subscriber account, and the sign-in (refresh family) it belongs to."""

    account_id: str
    family_id: str | None = None

    def get_user_id(self) -> str:
        return self.account_id


@dataclass(frozen=True)
class IssuedCode:
    id: str
    client_id: str
    account_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class IssuedToken:
    """A refresh token, or the sign-in an access token belongs to, as the token and revocation endpoints see it."""

    client_id: str
    family_id: str
    id: str | None = None
    account_id: str | None = None
    scope: str = ""

    def check_client(self, client: ApiClient) -> bool:
        return client.id == self.client_id

    def get_scope(self) -> str:
        return self.scope


@contextmanager
def tenant_transaction(client: ApiClient) -> Iterator[Session]:
    """A unit of work in the app's tenant: codes, tokens and accounts are tenant rows (row-level security)."""
    if client.tenant_id is None:
        raise InvalidGrantError("This client has no subscribers.")
    with runtime().db.transaction(tenant_id=client.tenant_id) as session:
        yield session


# Grants -------------------------------------------------------------------------------------------------------


class S256Challenge(CodeChallenge):
    """PKCE required on every authorization request, S256 only (RFC 9700 2.1.1): `plain` would let a stolen
    authorization request be replayed, and a missing challenge would let a stolen code be redeemed."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not accepted).")
        super().validate_code_challenge(grant, redirect_uri)


def _active_account(session: Session, account_id: str) -> SubscriberAccount:
    """The account tokens are about to be issued to; a closed one ends the grant with `invalid_grant`."""
    account = subscribers.get_account(session, account_id)
    if account is None or account.status != subscribers.ACTIVE:
        raise InvalidGrantError("The subscriber's account is closed.")
    return account


class SubscriberCodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant for the tenants' apps (public clients: no secret, PKCE instead)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        client: ApiClient = request.client
        with tenant_transaction(client) as session:
            subscribers.save_authorization_code(
                session,
                code=code,
                client_id=client.id,
                account_id=request.user.account_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                code_challenge=request.payload.data["code_challenge"],
                code_challenge_method="S256",
            )

    def query_authorization_code(self, code: str, client: ApiClient) -> IssuedCode | None:
        """The code if it is this app's, unexpired and unused; a used one revokes what was issued from it."""
        with tenant_transaction(client) as session:
            row = subscribers.find_authorization_code(session, code)
            if row is None or row.client_id != client.id:
                return None
            if row.used_at is not None:
                revoked = subscribers.revoke_family(session, row.id)
                log.warning("authorization code used twice", extra={"code_id": row.id, "revoked": revoked})
                return None
            if row.expires_at <= utcnow():
                return None
            return IssuedCode(
                row.id,
                row.client_id,
                row.account_id,
                row.redirect_uri,
                row.scope,
                row.code_challenge,
                row.code_challenge_method,
            )

    def authenticate_user(self, authorization_code: IssuedCode) -> SubscriberGrant:
        return SubscriberGrant(authorization_code.account_id, authorization_code.id)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Redeem the code once (a concurrent second use loses) and issue the first tokens of a new family."""
        client: ApiClient = self.request.client
        code: IssuedCode = self.request.authorization_code
        token: dict[str, Any] | None = None
        with tenant_transaction(client) as session:
            if subscribers.redeem_authorization_code(session, code.id):
                account = _active_account(session, code.account_id)
                user = self.authenticate_user(code)
                self.request.user = user
                token = self.generate_token(user=user, scope=code.scope, include_refresh_token=True)
                subscribers.save_refresh_token(
                    session,
                    token=token["refresh_token"],
                    client_id=client.id,
                    account_id=account.id,
                    scope=code.scope,
                    family_id=code.id,
                )
        if token is None:
            with tenant_transaction(client) as session:
                subscribers.revoke_family(session, code.id)
            raise InvalidGrantError("The authorization code was used already.")
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SubscriberRefreshGrant(grants.RefreshTokenGrant):
    """Refresh tokens of the tenants' apps, rotated at each use (RFC 9700 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        """A live refresh token of this app; a retired one used again revokes its whole family."""
        client: ApiClient = self.request.client
        with tenant_transaction(client) as session:
            row = subscribers.find_refresh_token(session, refresh_token)
            if row is None or row.client_id != client.id or row.revoked_at is not None:
                return None
            if row.rotated_at is not None:
                revoked = subscribers.revoke_family(session, row.family_id)
                log.warning("refresh token used after rotation", extra={"family": row.family_id, "revoked": revoked})
                return None
            if row.expires_at <= utcnow():
                return None
            return IssuedToken(row.client_id, row.family_id, row.id, row.account_id, row.scope)

    def authenticate_user(self, refresh_token: IssuedToken) -> SubscriberGrant:
        return SubscriberGrant(str(refresh_token.account_id), refresh_token.family_id)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Retire the refresh token (a concurrent second use loses and revokes the family) and issue the next."""
        client: ApiClient = self.request.client
        old: IssuedToken = self.request.refresh_token
        token: dict[str, Any] | None = None
        with tenant_transaction(client) as session:
            if old.id is not None and subscribers.retire_refresh_token(session, old.id):
                account = _active_account(session, str(old.account_id))
                user = self.authenticate_user(old)
                self.request.user = user
                token = self.issue_token(user, old)
                # The new refresh token keeps the whole grant, even when this access token asked for less.
                subscribers.save_refresh_token(
                    session,
                    token=token["refresh_token"],
                    client_id=client.id,
                    account_id=account.id,
                    scope=old.scope,
                    family_id=old.family_id,
                )
        if token is None:
            with tenant_transaction(client) as session:
                subscribers.revoke_family(session, old.family_id)
            raise InvalidGrantError("The refresh token was used already.")
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SubscriberRevocation(RevocationEndpoint):
    """RFC 7009: an app revokes a refresh token or an access token, and with it the whole sign-in.

    Apps identify with their client_id alone; back ends may call with their credentials, with nothing to
    revoke. A token the server does not know is answered 200 all the same.
    """

    CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]

    def __init__(self, server: Any, validator: Any) -> None:
        super().__init__(server)
        self.validator = validator

    def authenticate_token(self, request: OAuth2Request, client: ApiClient) -> IssuedToken | None:
        self.check_params(request, client)
        if not client.is_public:
            return None
        value = str(request.form["token"])
        hint = request.form.get("token_type_hint")
        token = None
        if hint != "access_token":
            token = self._refresh_token(client, value)
        if token is None:
            token = self._access_token(value)
        if token is None and hint == "access_token":
            token = self._refresh_token(client, value)
        if token is not None and not token.check_client(client):
            raise InvalidGrantError("The token was not issued to this client.")
        return token

    def _refresh_token(self, client: ApiClient, value: str) -> IssuedToken | None:
        with tenant_transaction(client) as session:
            row = subscribers.find_refresh_token(session, value)
            return None if row is None else IssuedToken(row.client_id, row.family_id, row.id, row.account_id)

    def _access_token(self, value: str) -> IssuedToken | None:
        """A JWT we signed (expired or not) that names its sign-in."""
        try:
            claims = self.validator.authenticate_token(value)
        except (OAuth2Error, JoseError, ValueError):
            return None
        family = claims.get(SESSION_CLAIM)
        if not family or not claims.get("client_id"):
            return None
        return IssuedToken(str(claims["client_id"]), str(family))

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        with tenant_transaction(request.client) as session:
            subscribers.revoke_family(session, token.family_id)


# The authorization request, kept between the page's steps ---------------------------------------------------


class _Payload(OAuth2Payload):
    def __init__(self, values: MultiDict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {key: self._values[key] for key in self._values}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, {key: self._values.getlist(key) for key in self._values})


class AuthorizationRequest(OAuth2Request):
    """The app's authorization request, from the query string or from the pending cookie."""

    def __init__(self, url: str, values: MultiDict[str, str]) -> None:
        super().__init__("GET", url, headers=dict(request.headers))
        self.payload = _Payload(values)
        self._values = values

    @property
    def args(self) -> MultiDict[str, str]:
        return self._values

    @property
    def form(self) -> MultiDict[str, str]:
        return self._values


def _validated_grant(server: Any, oauth_request: AuthorizationRequest) -> Any:
    """Authlib's checks, client and redirect URI first, then the response type, scope and PKCE.

    The parameters are printable ASCII (RFC 6749 appendix A) before Authlib sees them: its error messages
    quote what they refuse, and cannot quote anything else.
    """
    try:
        for name, values in oauth_request.payload.datalist.items():
            if any(not _VSCHARS.fullmatch(value) for value in values):
                raise InvalidRequestError(f"{name} must be printable ASCII characters.")
        grant = server.get_authorization_grant(oauth_request)
        grant.validate_no_multiple_request_parameter(oauth_request)
        for name, limit in MAX_PARAM.items():
            if len(oauth_request.payload.data.get(name) or "") > limit:
                raise InvalidRequestError(f"{name} is longer than {limit} characters.")
        grant.validate_consent_request()
    except OAuth2Error as error:
        error.state = oauth_request.payload.state
        raise
    return grant


# The page ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageBrand:
    name: str
    primary: str
    accent: str
    logo: str | None
    support_email: str | None
    support_url: str | None


def _colour(value: str, default: str) -> str:
    return value if _COLOUR.fullmatch(value or "") else default


# Logos inlined in pages, by storage key: a key names its content (a hash of it), so an entry never goes stale.
_LOGOS: OrderedDict[str, str] = OrderedDict()
_LOGOS_KEPT = 256
_LOGOS_LOCK = threading.Lock()


def _logo_data_uri(key: str, content_type: str, tenant_id: str) -> str | None:
    """The logo as a data: URI, read from storage once per process; None when it cannot be read (not kept)."""
    with _LOGOS_LOCK:
        cached = _LOGOS.get(key)
        if cached is not None:
            _LOGOS.move_to_end(key)
            return cached
    try:
        data = runtime().storage.get(key)
    except ObjectNotFound:
        return None
    except Exception:  # the logo is decoration: the page signs people in without it
        log.warning("brand logo unreadable", exc_info=True, extra={"tenant_id": tenant_id})
        return None
    if not 0 < len(data) <= MAX_LOGO_BYTES:
        return None
    uri = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
    with _LOGOS_LOCK:
        _LOGOS[key] = uri
        if len(_LOGOS) > _LOGOS_KEPT:
            _LOGOS.popitem(last=False)
    return uri


def page_brand(session: Session, tenant: Tenant) -> PageBrand:
    """The brand as a page shows it: its name, checked colours, and its logo inlined."""
    brand: BrandView = brand_of(session, tenant)
    logo = None
    if brand.logo_key and brand.logo_content_type in LOGO_TYPES:
        logo = _logo_data_uri(brand.logo_key, brand.logo_content_type, tenant.id)
    support_url = brand.support_url if brand.support_url and brand.support_url.startswith("https://") else None
    return PageBrand(
        name=brand.display_name,
        primary=_colour(brand.primary_color, DEFAULT_PRIMARY),
        accent=_colour(brand.accent_color, DEFAULT_ACCENT),
        logo=logo,
        support_email=brand.support_email,
        support_url=support_url,
    )


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def _csrf_token(pending: dict[str, Any]) -> str:
    return str(_serializer(_CSRF_SALT).dumps(pending["id"]))


def _csrf_ok(pending: dict[str, Any], sent: str | None) -> bool:
    try:
        bound = _serializer(_CSRF_SALT).loads(sent or "", max_age=PENDING_TTL_S)
    except BadSignature:
        return False
    return isinstance(bound, str) and hmac.compare_digest(bound, str(pending["id"]))


def _load_pending() -> dict[str, Any] | None:
    raw = request.cookies.get(PENDING_COOKIE)
    if not raw:
        return None
    try:
        pending = _serializer(_PENDING_SALT).loads(raw, max_age=PENDING_TTL_S)
    except BadSignature:
        return None
    return pending if isinstance(pending, dict) and isinstance(pending.get("params"), dict) else None


def _secure_cookies() -> bool:
    return runtime().settings.public_url.startswith("https://")


def _with_pending(response: Response, pending: dict[str, Any]) -> Response:
    value = _serializer(_PENDING_SALT).dumps(pending)
    response.set_cookie(
        PENDING_COOKIE,
        value,
        max_age=PENDING_TTL_S,
        path=AUTHORIZE_PATH,
        secure=_secure_cookies(),
        httponly=True,
        samesite="Lax",
    )
    return response


def _without_pending(response: Response) -> Response:
    response.delete_cookie(PENDING_COOKIE, path=AUTHORIZE_PATH, secure=_secure_cookies(), httponly=True, samesite="Lax")
    return response


def _render(template_values: dict[str, Any], status: int = 200) -> Response:
    # Pages without a tenant (a link that names no app we know) speak the default language.
    template_values.setdefault("lang", DEFAULT_LANGUAGE)
    template_values.setdefault("t", words(DEFAULT_LANGUAGE))
    response = Response(render_template("subscriber_authorize.html", **template_values), status=status)
    response.mimetype = "text/html"
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(message: str, status: int = 400, brand: PageBrand | None = None) -> Response:
    """A page that tells the subscriber what went wrong; never a redirect to an address we could not check."""
    return _render({"step": "error", "brand": brand or platform_brand(), "error": message}, status)


def platform_brand(name: str = "Sign in") -> PageBrand:
    """The platform's plain dress, for a page whose brand is not known (an unknown link)."""
    return PageBrand(name, DEFAULT_PRIMARY, DEFAULT_ACCENT, None, None, None)


def _refused(server: Any, oauth_request: AuthorizationRequest, error: OAuth2Error) -> Response:
    """Back to the app with the error when its redirect URI was checked; an error page otherwise."""
    if error.redirect_uri:
        response: Response = server.handle_error_response(oauth_request, error)
        return _without_pending(response)
    if error.error == "invalid_client":
        message = "it names an app that does not exist, or no longer does."
    elif oauth_request.payload.redirect_uri and "redirect" in (error.description or "").lower():
        # Not the address itself: the page must not lend its name to wherever a forged link points.
        message = "the app asked to return to an address it has not registered."
    else:
        message = error.description or error.error
    return _without_pending(error_page(f"This sign-in link is not valid: {message} Go back to the app and try again."))


def _refused_by_guard(refusal: ProblemError) -> Response:
    status = refusal.code if isinstance(refusal.code, int) and 400 <= refusal.code < 500 else 400
    return error_page(f"This sign-in link is not valid: {refusal.detail}", status)


def _consent_text(app_name: str, scope: str, text: Mapping[str, str]) -> str:
    wanted = [text[SCOPE_WORDING[s]] for s in scope.split() if s in SCOPE_WORDING]
    if not wanted:
        return text["wants_identity"].format(app=app_name)
    return text["wants_to"].format(app=app_name, what=text["and"].join(wanted))


# A message of the page: the key of its words in `page_text`, and the values it names.
Message = tuple[str, dict[str, str]]


@dataclass
class Step:
    """One rendering of the page: which form, with what message."""

    name: str
    error: Message | None = None
    notice: Message | None = None


def _locked_message(locked_until: Any) -> Message:
    if locked_until is None:
        return ("locked", {})
    return ("locked_until", {"time": f"{locked_until:%H:%M}"})


def _said(message: Message | None, text: Mapping[str, str]) -> str | None:
    return None if message is None else text[message[0]].format(**message[1])


def init_subscriber_auth(
    app: Flask, server: Any, *, issuer: str, scopes: tuple[str, ...], token_validator: Any
) -> None:
    """Register the grants, the revocation endpoint, the metadata document and the sign-in page.

    `token_validator` checks the signature of access tokens handed in for revocation.
    """
    server.register_grant(SubscriberCodeGrant, [S256Challenge(required=True)])
    server.register_grant(SubscriberRefreshGrant)
    server.register_endpoint(SubscriberRevocation(server, token_validator))
    authorize_url = f"{issuer}{AUTHORIZE_PATH}"

    @app.get(METADATA_PATH)
    def authorization_server_metadata() -> Response:
        """RFC 8414: where the endpoints are and what they support, for OAuth libraries to configure themselves."""
        auth_methods = ["client_secret_basic", "client_secret_post", "none"]
        response = jsonify(
            {
                "issuer": issuer,
                "authorization_endpoint": authorize_url,
                "token_endpoint": f"{issuer}{TOKEN_PATH}",
                "revocation_endpoint": f"{issuer}{REVOKE_PATH}",
                "jwks_uri": f"{issuer}{JWKS_PATH}",
                "scopes_supported": list(scopes),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": auth_methods,
                "revocation_endpoint_auth_methods_supported": auth_methods,
                "service_documentation": f"{issuer}/v1/docs",
            }
        )
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.post(REVOKE_PATH)
    def revoke_token() -> Response:
        """Revoke a subscriber's refresh or access token, and the sign-in it belongs to (RFC 7009)."""
        response: Response = server.create_endpoint_response(SubscriberRevocation.ENDPOINT_NAME)
        return response

    @app.get(AUTHORIZE_PATH)
    @refusals_answered_by(_refused_by_guard)
    def authorize() -> Response:
        """The sign-in page an app sends its subscriber to (authorization code with PKCE)."""
        values = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in OAUTH_PARAMS])
        oauth_request = AuthorizationRequest(authorize_url, values)
        try:
            grant = _validated_grant(server, oauth_request)
        except OAuth2Error as error:
            return _refused(server, oauth_request, error)
        pending = {"id": secrets.token_urlsafe(16), "params": values.to_dict()}
        return _step(grant.request.client, pending, Step("email"))

    @app.post(AUTHORIZE_PATH)
    @refusals_answered_by(_refused_by_guard)
    def authorize_step() -> Response:
        """One step of the sign-in page's forms: e-mail, password or code, consent."""
        pending = _load_pending()
        if pending is None or not _csrf_ok(pending, request.form.get("csrf_token")):
            return _without_pending(
                error_page("This sign-in page has expired. Go back to the app and start signing in again.")
            )
        oauth_request = AuthorizationRequest(authorize_url, MultiDict(pending["params"]))
        try:
            grant = _validated_grant(server, oauth_request)
        except OAuth2Error as error:
            return _refused(server, oauth_request, error)
        if request.form.get("action") == "consent":
            return _consent(server, grant, oauth_request, pending)
        return _sign_in_step(grant.request.client, pending, request.form.get("action", ""))


def _step(client: ApiClient, pending: dict[str, Any], step: Step) -> Response:
    """Render the page for `step`, in the tenant's brand, and keep the pending request in its cookie."""
    with runtime().db.transaction(tenant_id=client.tenant_id) as session:
        tenant = session.get(Tenant, client.tenant_id)
        if tenant is None or tenant.status in GONE_STATUSES:
            return _without_pending(error_page("This app is no longer available.", 404))
        brand = page_brand(session, tenant)
        chosen = tenant_settings.find_settings(session)
        lang = page_language((chosen.languages or []) if chosen is not None else [], request.accept_languages)
    text = words(lang)
    scope = str(pending["params"].get("scope") or client.get_allowed_scope(None) or "")
    values = {
        "step": step.name,
        "brand": brand,
        "lang": lang,
        "t": text,
        "app_name": client.name,
        "email": pending.get("email"),
        "error": _said(step.error, text),
        "notice": _said(step.notice, text),
        "csrf_token": _csrf_token(pending),
        "action_url": AUTHORIZE_PATH,
        "consent": _consent_text(client.name, scope, text),
    }
    response = _render(values, 200)
    if len(_serializer(_PENDING_SALT).dumps(pending)) > MAX_COOKIE_BYTES:
        return error_page("This sign-in link is too long. Go back to the app and try again.", 400, brand)
    return _with_pending(response, pending)


def _sign_in_step(client: ApiClient, pending: dict[str, Any], action: str) -> Response:
    return _step(client, pending, _next_step(client, pending, action))


def _email_step(pending: dict[str, Any]) -> Step:
    email = subscribers.normalized_email(str(request.form.get("email", "")))
    if not re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,189}", email):
        return Step("email", error=("invalid_email", {}))
    pending.update(email=email, account=None)
    return Step("method")


def _next_step(client: ApiClient, pending: dict[str, Any], action: str) -> Step:
    """Act on one sign-in form (e-mail, password, "send me a code", code) and say which form comes next."""
    if action == "email":
        return _email_step(pending)
    email = pending.get("email")
    if not email or action not in ("password", "send_code", "code"):
        pending.update(email=None, account=None)
        return Step("email")
    outcome = _attempt(client, str(email), action)
    if outcome is None:
        return Step("code", notice=("code_sent", {"email": str(email)}))
    if outcome.account is not None:
        pending["account"] = outcome.account.id
        return Step("consent")
    retry = "code" if action == "code" else "method"
    if outcome.refused == "locked":
        return Step(retry, error=_locked_message(outcome.locked_until))
    return Step(retry, error=("wrong_code", {}) if action == "code" else ("wrong_password", {}))


def _attempt(client: ApiClient, email: str, action: str) -> subscribers.SignIn | None:
    """Send a code (None), or check a password or a code, in a transaction of its own (failures count)."""
    rt = runtime()
    outcome = None
    with rt.db.transaction(tenant_id=client.tenant_id) as session:
        if action == "send_code":
            tenant = session.get(Tenant, client.tenant_id)
            if tenant is not None:
                subscribers.send_sign_in_code(session, tenant, email)
        elif action == "password":
            outcome = subscribers.sign_in_with_password(session, email, str(request.form.get("password", "")))
        else:
            outcome = subscribers.sign_in_with_code(session, email, str(request.form.get("code", "")))
        wrote_outbox = bool(session.info.get("outbox_written"))
    if wrote_outbox:
        rt.poke_relay()
    return outcome


def _consent(server: Any, grant: Any, oauth_request: AuthorizationRequest, pending: dict[str, Any]) -> Response:
    client: ApiClient = grant.request.client
    account_id = pending.get("account")
    if not account_id:
        pending.update(account=None)
        return _step(client, pending, Step("email"))
    if request.form.get("decision") != "allow":
        denied = AccessDeniedError("The subscriber did not allow access.", redirect_uri=grant.redirect_uri)
        denied.state = oauth_request.payload.state
        response: Response = server.handle_error_response(oauth_request, denied)
        return _without_pending(response)
    with runtime().db.transaction(tenant_id=client.tenant_id) as session:
        account = subscribers.get_account(session, account_id)
        active = account is not None and account.status == subscribers.ACTIVE
        tenant = session.get(Tenant, client.tenant_id)
    if tenant is None or tenant.status in GONE_STATUSES:
        return _without_pending(error_page("This app is no longer available.", 404))
    if not active:
        return _without_pending(error_page("This account cannot sign in. Contact the brand's support."))
    response = server.create_authorization_response(
        request=oauth_request, grant_user=SubscriberGrant(account_id), grant=grant
    )
    return _without_pending(response)
