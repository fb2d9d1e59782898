"""Mutual TLS on ES2+ (SGP.22 6.1): the TLS set-up of both ends, and who may notify us.

We call the SM-DP+ with our client certificate and verify its server against its CA; the SM-DP+ calls
our HandleDownloadProgressInfo endpoint with its client certificate, which we verify against the same
CA and match against the subjects allowed to notify us. The certificate comes from the TLS connection
when we are served directly over TLS, or from a header set by a TLS-terminating proxy, believed only
when the request comes from one of the trusted proxy addresses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from mvne.infra.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Where WSGI servers put the TLS socket of the request (gunicorn, werkzeug's development server).
_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def client_tls(ca_file: str | None, cert: tuple[str, str] | None) -> bool | ssl.SSLContext:
    """TLS settings for httpx calling an SM-DP+: verify it with `ca_file` (else the system CAs), show `cert`."""
    if cert is None and not ca_file:
        return True
    # httpx 0.28 deprecates `cert=` and `verify=<path>`; an SSLContext says the same without warnings.
    context = ssl.create_default_context(cafile=ca_file) if ca_file else httpx.create_ssl_context()
    if cert is not None:
        context.load_cert_chain(certfile=cert[0], keyfile=cert[1])
    return context


def smdp_client_tls(settings: Settings) -> bool | ssl.SSLContext:
    """TLS settings for our calls to the SM-DP+ (ES2+ and, for the simulator, its admin API)."""
    cert = (settings.smdp_client_cert_file, settings.smdp_client_key_file) if settings.smdp_client_cert_file else None
    try:
        return client_tls(settings.smdp_ca_file or None, cert)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"MVNE_SMDP_CLIENT_CERT_FILE: cannot load the ES2+ client certificate, its key or the CA: {exc}"
        ) from None


def server_tls(cert_file: str, key_file: str, ca_file: str | None, *, require_client_cert: bool) -> ssl.SSLContext:
    """A server's TLS context; with `ca_file` it asks clients for a certificate issued under that CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("requiring client certificates needs the CA that issues them")
    return context


class NotifierRefused(Exception):
    """The caller of our ES2+ endpoint is not an SM-DP+ we trust; codes as in SGP.22 5.2.6."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        # Subject 1.1, the function requester: reason 1.1 unknown (not authenticated), 1.2 not allowed.
        self.subject_code = "1.1"
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class Notifier:
    """An SM-DP+ whose certificate chained to the CA and whose subject is allowed."""

    subject: str
    via_proxy: bool


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


class NotifierAuth:
    """Authenticates the SM-DP+ calling our ES2+ endpoint by its TLS client certificate."""

    def __init__(
        self,
        *,
        ca_certs: list[x509.Certificate],
        allowed_subjects: tuple[str, ...] = (),
        trusted_proxies: tuple[str, ...] = (),
        cert_header: str = "X-Client-Cert",
    ) -> None:
        if not ca_certs:
            raise ValueError("at least one CA certificate is needed")
        self._store = Store(ca_certs)
        self.allowed_subjects = allowed_subjects
        self._allowed_cns = {entry for entry in allowed_subjects if "=" not in entry}
        self._allowed_names = {_name_key(x509.Name.from_rfc4514_string(e)) for e in allowed_subjects if "=" in e}
        self._proxies = tuple(ipaddress.ip_network(value, strict=False) for value in trusted_proxies)
        self._header_key = "HTTP_" + cert_header.upper().replace("-", "_")

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifierAuth | None:
        """The authenticator the settings ask for; None when no SM-DP+ CA is set (embedded sandboxes only)."""
        if not settings.smdp_ca_file:
            return None
        try:
            pem = Path(settings.smdp_ca_file).read_bytes()
        except OSError as exc:
            raise SettingsError(f"MVNE_SMDP_CA_FILE: cannot read {settings.smdp_ca_file!r}: {exc}") from None
        cas = _certificates(pem)
        if not cas:
            raise SettingsError(f"MVNE_SMDP_CA_FILE: no PEM certificate in {settings.smdp_ca_file!r}")
        try:
            return cls(
                ca_certs=cas,
                allowed_subjects=settings.smdp_allowed_subjects,
                trusted_proxies=settings.smdp_trusted_proxies,
                cert_header=settings.smdp_client_cert_header,
            )
        except ValueError as exc:
            raise SettingsError(f"MVNE_SMDP_ALLOWED_SUBJECTS: not an RFC 4514 subject: {exc}") from None

    def authenticate(self, environ: Mapping[str, Any]) -> Notifier:
        """Return who called, or raise NotifierRefused (no certificate, not from the CA, not allowed)."""
        via_proxy = self._from_trusted_proxy(environ)
        chain = self._forwarded_chain(environ) if via_proxy else self._peer_chain(environ)
        if not chain:
            raise NotifierRefused("1.1", "no client certificate was presented")
        leaf = chain[0]
        verifier = PolicyBuilder().store(self._store).time(dt.datetime.now(dt.UTC)).build_client_verifier()
        try:
            verifier.verify(leaf, chain[1:])
        except VerificationError as exc:
            raise NotifierRefused("1.1", f"the client certificate is not trusted: {exc}") from None
        subject = leaf.subject.rfc4514_string()
        if not self._allowed(leaf):
            raise NotifierRefused("1.2", f"the certificate {subject!r} is not allowed to notify")
        return Notifier(subject=subject, via_proxy=via_proxy)

    def _allowed(self, cert: x509.Certificate) -> bool:
        if not self.allowed_subjects:
            return True
        common_names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
        return bool(common_names & self._allowed_cns) or _name_key(cert.subject) in self._allowed_names

    def _from_trusted_proxy(self, environ: Mapping[str, Any]) -> bool:
        if not self._proxies:
            return False
        # The address of the connection, not one a forwarded-for header may have put in its place.
        original = environ.get("werkzeug.proxy_fix.orig")
        remote = original.get("REMOTE_ADDR") if isinstance(original, dict) else None
        remote = remote or environ.get("REMOTE_ADDR") or ""
        try:
            address = ipaddress.ip_address(str(remote).split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._proxies)

    def _forwarded_chain(self, environ: Mapping[str, Any]) -> list[x509.Certificate]:
        raw = environ.get(self._header_key)
        if not raw:
            return []
        return _certificates(urllib.parse.unquote(str(raw)).encode())

    @staticmethod
    def _peer_chain(environ: Mapping[str, Any]) -> list[x509.Certificate]:
        pem = environ.get("SSL_CLIENT_CERT")  # set by werkzeug's server and by mod_wsgi
        if isinstance(pem, str) and pem:
            return _certificates(pem.encode())
        for key in _SOCKET_KEYS:
            sock = environ.get(key)
            if isinstance(sock, ssl.SSLSocket):
                der = sock.getpeercert(binary_form=True)
                if der:
                    return [x509.load_der_x509_certificate(der)]
        return []


def _name_key(name: x509.Name) -> tuple[tuple[str, str], ...]:
    """A subject compared regardless of the order its attributes were written in."""
    return tuple(sorted((a.oid.dotted_string, str(a.value)) for a in name))
