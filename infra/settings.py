"""Typed settings read from the environment (`MVNE_*`), checked once at start.

A bad value stops the process with an error naming the variable, never a stack trace
from deep inside a library at the first request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

Mode = Literal["embedded", "production"]
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}: expected a number from {low} to {high}, got {value}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _subjects(name: str, raw: str) -> tuple[str, ...]:
    """Split on `;` (RFC 4514 escapes a `;` inside a value as `\\;`, which stays in place)."""
    entries: list[str] = []
    current, escaped = "", False
    for char in raw:
        if char == ";" and not escaped:
            entries.append(current)
            current = ""
            continue
        current += char
        escaped = char == "\\" and not escaped
    entries.append(current)
    return tuple(entry.strip() for entry in entries if entry.strip())


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR blocks, checked here and kept as text."""
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: expected IP addresses or CIDR blocks, got {value!r}") from None
    return values


RATE_LIMIT_STORAGES = ("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")


def _rates(name: str, raw: str) -> str:
    """Rate limits as "<count>/<unit>" ("1200/minute", "20 per second"), several separated by ";"."""
    from limits import parse_many

    try:
        items = parse_many(raw) if raw.strip() else []
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise SettingsError(f"{name}: expected a rate limit such as 1200/minute (several separated by ;), got {raw!r}")
    return raw.strip()


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the platform reads from its environment. Field `x` comes from `MVNE_X`."""

    mode: Mode = "embedded"
    var_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    database_url: str = ""
    migration_database_url: str = ""
    # The role platform-scoped work connects as on PostgreSQL: BYPASSRLS, not the tables' owner.
    platform_database_url: str = ""
    broker_url: str = "memory://"
    broker_namespace: str = "mvne"
    storage_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    secret_key: str = ""
    jwt_private_key: str = ""
    token_ttl: int = 900
    # How long a staff user's console session lasts after its login.
    staff_session_ttl_s: int = 12 * 3600
    sim_key: str = ""
    smdp_url: str = ""
    smdp_address: str = "smdp.sandbox.mvne.dev"
    smdp_requester_id: str = "mvne"
    # The SM-DP+ is our simulator: profile batches are loaded into it through its admin API.
    smdp_sandbox: bool = True
    # ES2+ runs over mutual TLS both ways. Our certificate and key (PEM files) when we call the SM-DP+;
    # the SM-DP+'s CA (PEM bundle) verifies its server and the client certificate it notifies us with.
    smdp_client_cert_file: str = ""
    smdp_client_key_file: str = ""
    smdp_ca_file: str = ""
    # Certificates allowed to notify us: common names or full RFC 4514 subjects, `;`-separated (empty: any
    # certificate issued under the CA).
    smdp_allowed_subjects: tuple[str, ...] = ()
    # Behind a TLS-terminating proxy: the addresses (IPs or CIDRs) whose forwarded client certificate
    # header (URL-encoded PEM, as nginx's $ssl_client_escaped_cert) is believed; from others it is ignored.
    smdp_trusted_proxies: tuple[str, ...] = ()
    smdp_client_cert_header: str = "X-Client-Cert"
    network_url: str = ""
    embedded_simulators: bool = True
    # Webhook endpoints may be on private or loopback addresses (sandboxes); never in production.
    webhook_allow_private: bool = True
    worker_threads: int = 4
    job_max_retries: int = 8
    # A job sent to the broker and not finished within its lease is sent again (the worker may have died).
    job_lease_s: int = 300
    relay_interval_ms: int = 200
    # Usage dated later than now plus this tolerance is refused (clocks of network elements drift).
    usage_clock_skew_s: int = 900
    # Usage older than this is refused: its period is long closed and the customer long billed.
    usage_retention_days: int = 180
    # A usage file is cut in segments of about this many bytes, each a job (a file of several is partitioned by line).
    usage_segment_bytes: int = 4 << 20
    # Online charging's state (open sessions, reservations, settled usage not yet written): a Redis that keeps every
    # change (appendonly yes, appendfsync always), or memory:// (embedded mode: one process, kept nowhere).
    charging_url: str = ""
    # Accept a Redis for charging that does not keep what it is told (tests, sandboxes): a restart loses sessions.
    charging_volatile_ok: bool = False
    # How long a grant is valid (Validity-Time), and how long after that an unrenewed session is settled as stale.
    charging_validity_s: int = 3600
    charging_grace_s: int = 60
    # Bounds on request bodies: larger bodies get 413, deeper JSON gets 422.
    max_body_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 32
    # Rate limits: where the counters live (shared by every web instance), the budget of each caller of the
    # API, and the stricter one of the token endpoint (per client id and per address). Limits are written as
    # "1200/minute", several separated by ";" ("20/second;1200/minute").
    rate_limit_storage_url: str = ""
    rate_limit_default: str = "1200/minute"
    rate_limit_token: str = "30/minute"  # noqa: S105 (a rate, not a secret)
    # Proxies (IPs or CIDRs) in front of the web instances whose X-Forwarded-For names the caller's address.
    rate_limit_trusted_proxies: tuple[str, ...] = ()
    # Where e-mail goes (mvne.infra.mail): smtp://user:password@host:587, smtps://…, smtp+plain://host:25, or
    # `mailbox` (embedded mode's default), the local mailbox read with `mvne mailbox` and GET /v1/dev/mailbox.
    mail_url: str = ""
    mail_from: str = "no-reply@mvne.localhost"
    log_level: str = "INFO"
    log_format: str = "json"
    demo_client_secret: str = "demo-secret-change-me"  # noqa: S105 (embedded demo only)
    # The demo tenant's owner logs in to the console with it (POST /v1/console/sessions).
    demo_staff_password: str = "violet harbour kettle sprint 7302"  # noqa: S105 (embedded demo only)

    # Values read from the environment, before defaults were derived (for error messages).
    source: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes).derived()

    def derived(self) -> Settings:
        """Fill the defaults that depend on other settings (embedded mode)."""
        var_dir = self.var_dir
        public_url = (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
        changes: dict[str, Any] = {"public_url": public_url}
        if not self.database_url:
            changes["database_url"] = f"sqlite:///{(var_dir / 'mvne.db').as_posix()}"
        if not self.storage_url:
            changes["storage_url"] = f"file://{(var_dir / 'storage').as_posix()}"
        if not self.smdp_url and self.embedded_simulators:
            changes["smdp_url"] = f"{public_url}/sim/smdp"
        if not self.network_url and self.embedded_simulators:
            changes["network_url"] = f"{public_url}/sim/network"
        if not self.mail_url and not self.is_production:
            changes["mail_url"] = "mailbox"
        if not self.charging_url and not self.is_production:
            changes["charging_url"] = "memory://"
        if not self.rate_limit_storage_url:
            changes["rate_limit_storage_url"] = self.broker_url if self.is_production else "memory://"
        return replace(self, **changes)

    def check(self) -> Settings:
        """Refuse combinations that cannot run; embedded mode tolerates generated secrets."""
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise SettingsError(
                f"MVNE_DATABASE_URL: expected sqlite:/// or postgresql+psycopg://, got {self.database_url!r}"
            )
        if not self.broker_url.startswith(("memory://", "redis://", "rediss://")):
            raise SettingsError(f"MVNE_BROKER_URL: expected memory:// or redis://host:port/db, got {self.broker_url!r}")
        if not self.storage_url.startswith(("file://", "s3://")):
            raise SettingsError(f"MVNE_STORAGE_URL: expected file://folder or s3://bucket, got {self.storage_url!r}")
        self._check_smdp_tls()
        self._check_mail()
        if self.is_production:
            for name in ("secret_key", "jwt_private_key", "sim_key"):
                if not getattr(self, name):
                    raise SettingsError(f"MVNE_{name.upper()}: required in production mode")
            if not self.is_postgres:
                raise SettingsError("MVNE_DATABASE_URL: production mode needs PostgreSQL")
            if not self.platform_database_url:
                raise SettingsError(
                    "MVNE_PLATFORM_DATABASE_URL: required in production mode (a role with BYPASSRLS that platform "
                    "jobs and operators use; the application role stays bound by row-level security)"
                )
            if not self.broker_url.startswith("redis"):
                raise SettingsError("MVNE_BROKER_URL: production mode needs Redis")
            if not self.smdp_url:
                raise SettingsError("MVNE_SMDP_URL: required in production mode")
            if not self.charging_url.startswith(("redis://", "rediss://")):
                raise SettingsError(
                    "MVNE_CHARGING_URL: production mode needs a Redis for online charging (redis://host:port/db, "
                    "appendonly yes and appendfsync always)"
                )
            if not self.network_url:
                raise SettingsError("MVNE_NETWORK_URL: required in production mode")
        self._check_rate_limits()
        return self

    def _check_mail(self) -> None:
        if self.mail_url == "mailbox":
            if self.is_production:
                raise SettingsError("MVNE_MAIL_URL: production mode sends mail through an SMTP server (smtp://…)")
            return
        if not self.mail_url:
            raise SettingsError("MVNE_MAIL_URL: required in production mode (smtp://user:password@host:587)")
        parts = urlsplit(self.mail_url)
        if parts.scheme not in ("smtp", "smtps", "smtp+plain") or not parts.hostname:
            raise SettingsError(
                "MVNE_MAIL_URL: expected smtp://, smtps:// or smtp+plain:// with a host, or mailbox; got "
                f"{parts.scheme}://{parts.hostname or ''} (credentials not shown)"
            )
        if "@" not in self.mail_from:
            raise SettingsError(f"MVNE_MAIL_FROM: expected an e-mail address, got {self.mail_from!r}")

    def _check_rate_limits(self) -> None:
        for name in ("rate_limit_default", "rate_limit_token"):
            _rates(f"MVNE_{name.upper()}", getattr(self, name))
        if not self.rate_limit_storage_url.startswith(RATE_LIMIT_STORAGES):
            raise SettingsError(
                f"MVNE_RATE_LIMIT_STORAGE_URL: expected memory:// or redis://host:port/db, "
                f"got {self.rate_limit_storage_url!r}"
            )
        if self.is_production and self.rate_limit_storage_url.startswith("memory://"):
            raise SettingsError(
                "MVNE_RATE_LIMIT_STORAGE_URL: production mode needs Redis (every web instance must count against "
                "the same limits)"
            )

    def _check_smdp_tls(self) -> None:
        # The files themselves are read (and refused with their variable's name) when the app starts.
        if bool(self.smdp_client_cert_file) != bool(self.smdp_client_key_file):
            missing = "MVNE_SMDP_CLIENT_KEY_FILE" if self.smdp_client_cert_file else "MVNE_SMDP_CLIENT_CERT_FILE"
            raise SettingsError(f"{missing}: give the ES2+ client certificate and its key together")
        if self.is_production and not self.smdp_ca_file:
            raise SettingsError(
                "MVNE_SMDP_CA_FILE: required in production mode (the SM-DP+'s CA: without it anyone could "
                "send ES2+ download notifications)"
            )
        if self.is_production and not self.smdp_allowed_subjects:
            raise SettingsError(
                "MVNE_SMDP_ALLOWED_SUBJECTS: required in production mode (the SM-DP+ certificates allowed to "
                "notify us: without it any certificate the CA ever issued could)"
            )


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "mode": lambda n, v: _choice(n, v, ("embedded", "production")),
    "var_dir": lambda n, v: Path(v),
    "port": lambda n, v: _int(n, v, 1, 65535),
    "token_ttl": lambda n, v: _int(n, v, 60, 86400),
    "staff_session_ttl_s": lambda n, v: _int(n, v, 300, 7 * 86400),
    "worker_threads": lambda n, v: _int(n, v, 1, 64),
    "job_max_retries": lambda n, v: _int(n, v, 0, 50),
    "relay_interval_ms": lambda n, v: _int(n, v, 10, 60000),
    "job_lease_s": lambda n, v: _int(n, v, 1, 7 * 86400),
    "usage_clock_skew_s": lambda n, v: _int(n, v, 0, 86400),
    "charging_volatile_ok": _bool,
    "charging_validity_s": lambda n, v: _int(n, v, 1, 86400),
    "charging_grace_s": lambda n, v: _int(n, v, 0, 86400),
    "usage_retention_days": lambda n, v: _int(n, v, 1, 3650),
    "usage_segment_bytes": lambda n, v: _int(n, v, 4096, 1 << 30),
    "max_body_bytes": lambda n, v: _int(n, v, 1024, 1024**3),
    "max_json_depth": lambda n, v: _int(n, v, 2, 1000),
    "rate_limit_default": _rates,
    "rate_limit_token": _rates,
    "rate_limit_trusted_proxies": _networks,
    "embedded_simulators": _bool,
    "smdp_sandbox": _bool,
    "smdp_allowed_subjects": _subjects,
    "smdp_trusted_proxies": _networks,
    "webhook_allow_private": _bool,
    "log_format": lambda n, v: _choice(n, v, ("json", "console")),
    "log_level": lambda n, v: _choice(n, v.upper(), ("DEBUG", "INFO", "WARNING", "ERROR")),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read `MVNE_*` variables; raise SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for f in fields(Settings):
        if f.name == "source":
            continue
        key = f"MVNE_{f.name.upper()}"
        raw = env.get(key)
        if raw is None:
            continue
        seen[key] = raw
        parser = _PARSERS.get(f.name)
        values[f.name] = parser(key, raw) if parser else raw
    if values.get("mode") == "production":
        values.setdefault("embedded_simulators", False)
        values.setdefault("webhook_allow_private", False)
    return Settings(**values, source=seen).derived().check()
