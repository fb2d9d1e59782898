"""Rate limits: a budget per caller of the API, a stricter one on the token endpoint, counted in shared storage.

The caller is the authenticated principal: an API client, or a subscriber signed in through one of the
tenant's apps (each subscriber has a bucket of their own, not the app's, which all its subscribers share);
its bucket is named by `principal_key`. A request without a valid bearer token counts against its address.
The token endpoint (and the revocation endpoint) has its own, stricter limit, counted twice: per address, every
request (one address guessing secrets or trying many clients), and per confidential client, only the tokens it
is granted (so knowing a client id is not enough to use up its budget; an app's public id has none, its
subscribers count per address). Counters live in Redis in production, so every web instance counts against
the same limits; in memory in embedded mode.

Limited responses carry the IETF RateLimit fields, both the separate `RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset` and the current draft's `RateLimit-Policy` and `RateLimit`; a
request over the limit is answered 429 `rate_limited` as a problem, with `Retry-After` in seconds.

What is not limited is declared by the app (`exempt`): health, readiness, metrics, the documentation,
static files, and peers' notifications that have their own authentication.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from joserfc.errors import JoseError
from limits import RateLimitItem, parse_many

from mvne.infra.web.auth import AUTH_EXTENSION, KIND_CLIENT, KIND_SUBSCRIBER, SUBSCRIBER_CLAIM, Principal
from mvne.infra.web.problems import problem

log = logging.getLogger("mvne.limits")

EXTENSION = "mvne.limits"
CODE = "rate_limited"
STRATEGY = "fixed-window"
# Scopes of the counters, also the policy names in the RateLimit fields.
API_POLICY = "api"
TOKEN_CLIENT_SCOPE = "token-client"  # noqa: S105 (names of counters)
TOKEN_ADDRESS_SCOPE = "token-address"  # noqa: S105 (names of counters)
TOKEN_POLICY = "token"  # noqa: S105 (names of counters)
MAX_KEY_PART = 128

# The fields written on every limited response.
LIMIT_HEADER = "RateLimit-Limit"
REMAINING_HEADER = "RateLimit-Remaining"
RESET_HEADER = "RateLimit-Reset"
POLICY_HEADER = "RateLimit-Policy"
RATELIMIT_HEADER = "RateLimit"
RETRY_AFTER_HEADER = "Retry-After"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class RateLimits:
    """The app's limiter and what it limits."""

    limiter: Limiter
    default: str
    token: str
    token_endpoints: frozenset[str]
    trusted_proxies: tuple[Network, ...] = ()
    exempt_endpoints: set[str] = field(default_factory=set)
    exempt_blueprints: set[str] = field(default_factory=set)

    def is_limited(self, endpoint: str | None) -> bool:
        """Whether requests to `endpoint` count against a limit (the same rule the limiter applies)."""
        if not endpoint or endpoint == "static" or endpoint.endswith(".static"):
            return False
        if endpoint in self.exempt_endpoints:
            return False
        return not any(endpoint.startswith(f"{blueprint}.") for blueprint in self.exempt_blueprints)

    def policies(self, endpoint: str) -> list[tuple[str, RateLimitItem]]:
        """The limits requests to `endpoint` count against, by policy name (for the API document)."""
        if not self.is_limited(endpoint):
            return []
        if endpoint in self.token_endpoints:
            return [(TOKEN_POLICY, item) for item in parse_many(self.token)]
        return [(API_POLICY, item) for item in parse_many(self.default)]


def init_rate_limits(
    app: Flask,
    *,
    storage_url: str,
    default: str,
    token: str,
    token_endpoints: Iterable[str],
    key_prefix: str = "",
    trusted_proxies: Iterable[str] = (),
) -> RateLimits:
    """Limit every route of `app` but those declared `exempt`; `token_endpoints` get the token limit instead.

    Call it after the hook that names the request (its id goes in the problem) and before the others.
    """
    tokens = frozenset(token_endpoints)

    def is_token_request() -> bool:
        return request.endpoint in tokens

    def is_api_request() -> bool:
        return request.endpoint not in tokens

    limiter = Limiter(
        caller_key,
        application_limits=[
            ApplicationLimit(default, scope=API_POLICY, exempt_when=is_token_request),
            # A confidential client's own budget: only tokens it was granted count, so whoever knows a client id
            # cannot use up its budget with wrong secrets (guesses count per address, below). A public client (an
            # app, whose id anyone may read) has no budget of its own: its subscribers count per address.
            ApplicationLimit(
                token,
                scope=TOKEN_CLIENT_SCOPE,
                key_function=token_client_key,
                exempt_when=lambda: is_api_request() or not claims_a_secret(),
                deduct_when=lambda response: response.status_code < 400,
            ),
            ApplicationLimit(token, scope=TOKEN_ADDRESS_SCOPE, key_function=address_key, exempt_when=is_api_request),
        ],
        storage_uri=storage_url,
        # Redis connections are made when first used; a slow or lost Redis must not hang requests.
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1} if storage_url.startswith("redis") else {},
        strategy=STRATEGY,
        key_prefix=key_prefix,
        headers_enabled=False,  # written below, as the IETF fields (Flask-Limiter writes X-RateLimit-*)
        # Counters unreachable: each instance counts in memory until the storage is back, never a 500.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    state = RateLimits(
        limiter=limiter,
        default=default,
        token=token,
        token_endpoints=tokens,
        trusted_proxies=tuple(ipaddress.ip_network(value, strict=False) for value in trusted_proxies),
    )
    app.extensions[EXTENSION] = state

    @limiter.request_filter
    def not_limited() -> bool:
        return not state.is_limited(request.endpoint)

    # Registered before the limiter's own hooks, so it runs after them (Flask runs after-request hooks last
    # registered first): the counters it reports include what the limiter deducts once the answer is known.
    app.after_request(_write_headers)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    return state


def exempt(app: Flask, *endpoints: str, blueprints: Iterable[str] = ()) -> None:
    """Take endpoints (by name) and whole blueprints out of every limit."""
    state = rate_limits(app)
    state.exempt_endpoints.update(endpoints)
    state.exempt_blueprints.update(blueprints)


def rate_limits(app: Flask | None = None) -> RateLimits:
    limits: RateLimits = (app or current_app).extensions[EXTENSION]
    return limits


def principal_key(principal: Principal) -> str:
    """The bucket of an authenticated caller: one per API client, one per subscriber (whatever app they use)."""
    if principal.kind == KIND_SUBSCRIBER and principal.subject:
        return f"subscriber:{principal.subject[:MAX_KEY_PART]}"
    return f"client:{principal.client_id[:MAX_KEY_PART]}"


def caller_key() -> str:
    """The request's bucket: its principal's when the bearer token is valid, else its address's."""
    principal = _principal()
    return principal_key(principal) if principal is not None else address_key()


def address_key() -> str:
    return f"address:{client_address()}"


def claims_a_secret() -> bool:
    """Whether a token request authenticates a confidential client (a secret in HTTP Basic or the form)."""
    credentials = request.authorization
    if credentials is not None and credentials.type == "basic":
        return bool(credentials.password)
    return bool(request.form.get("client_secret"))


def token_client_key() -> str:
    """The client id a token request claims (HTTP Basic or the form)."""
    credentials = request.authorization
    client_id = credentials.username if credentials and credentials.type == "basic" else None
    if not client_id:
        client_id = request.form.get("client_id")
    return f"client:{(client_id or '-')[:MAX_KEY_PART]}"


def client_address() -> str:
    """The caller's address: the peer's, or the one the trusted proxies in front of us forwarded."""
    peer = request.remote_addr or "unknown"
    proxies = rate_limits().trusted_proxies
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [hop.strip() for value in request.headers.getlist("X-Forwarded-For") for hop in value.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _within(hop, proxies):
            return hop[:MAX_KEY_PART]
    return peer


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _principal() -> Principal | None:
    """The caller, from a bearer token we signed that has not expired.

    Only what names the bucket is checked here (signature, issuer, audience, expiry), with no database
    lookup: the view checks the token again, with the client's standing and the scope it needs.
    """
    principal: Principal | None = g.get("principal")
    if principal is not None:
        return principal
    auth = current_app.extensions.get(AUTH_EXTENSION)
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    if auth is None or kind.lower() != "bearer" or not credential.strip():
        return None
    try:
        token = auth.protector.get_token_validator("bearer").authenticate_token(credential.strip())
        token.validate()
    except (OAuth2Error, JoseError):
        return None
    subscriber = token.get(SUBSCRIBER_CLAIM)
    return Principal(
        client_id=str(token["client_id"]),
        tenant_id=token.get("tenant_id"),
        scopes=frozenset(str(token.get("scope") or "").split()),
        kind=KIND_SUBSCRIBER if subscriber else KIND_CLIENT,
        subject=str(subscriber) if subscriber else None,
    )


def _reported(limits: list[RequestLimit]) -> RequestLimit | None:
    """The limit to report: the one breached, else the one with the fewest requests left."""
    if not limits:
        return None
    breached = [limit for limit in limits if limit.breached]
    if breached:
        return breached[0]
    return min(limits, key=lambda limit: limit.remaining)


def _seconds_left(limit: RequestLimit) -> int:
    return max(0, math.ceil(limit.window.reset_time - time.time()))


def _policy_name(limit: RequestLimit) -> str:
    return TOKEN_POLICY if limit.request_args[-1].startswith("token-") else API_POLICY


def _write_headers(response: Response) -> Response:
    try:
        limiter = rate_limits().limiter
        limit = _reported(limiter.current_limits)
        if limit is None:
            return response
        amount, remaining, reset = limit.limit.amount, max(0, limit.remaining), _seconds_left(limit)
        name = _policy_name(limit)
        window = limit.limit.get_expiry()
        response.headers[LIMIT_HEADER] = str(amount)
        response.headers[REMAINING_HEADER] = str(remaining)
        response.headers[RESET_HEADER] = str(reset)
        response.headers[POLICY_HEADER] = f'"{name}";q={amount};w={window}'
        response.headers[RATELIMIT_HEADER] = f'"{name}";r={remaining};t={reset}'
    except Exception:  # the counters' storage failed: the answer goes out without the fields
        log.warning("rate limit fields not written", exc_info=True)
    return response


def _too_many_requests(error: RateLimitExceeded) -> Response:
    limit = _reported(rate_limits().limiter.current_limits)
    item = error.limit.limit
    try:
        retry_after = max(1, _seconds_left(limit)) if limit is not None else item.get_expiry()
    except Exception:
        retry_after = item.get_expiry()
    key = limit.request_args[-2] if limit is not None else ""
    who = {"client": "for this API client", "subscriber": "for this subscriber"}.get(
        key.split(":", 1)[0], "from this address"
    )
    if limit is not None and _policy_name(limit) == TOKEN_POLICY:
        who = "for this client id" if key.startswith("client:") else "from this address"
        what = "token requests"
    else:
        what = "requests"
    detail = (
        f"Too many {what}: the limit is {item.amount} per {window_text(item)} {who}; retry in {retry_after} seconds."
    )
    return problem(429, CODE, "Too Many Requests", detail, headers={RETRY_AFTER_HEADER: str(retry_after)})


def window_text(item: RateLimitItem) -> str:
    granularity = item.GRANULARITY.name
    return granularity if item.multiples == 1 else f"{item.multiples} {granularity}s"
