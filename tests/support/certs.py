"""A throwaway certificate authority for tests of mutual TLS: a CA, server and client certificates,
and a TLS server to put an app behind.

Keys are P-256 (fast to make); certificates follow the Web PKI profile that `cryptography`'s verifier
checks (key usages, extended key usages, key identifiers), as a real SM-DP+ channel's would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import make_server


def _name(common_name: str, organization: str) -> x509.Name:
    # The usual order (organization, then common name), printed `CN=...,O=...` in RFC 4514.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, written to `cert_file` and `key_file`."""

    cert: x509.Certificate
    cert_file: Path
    key_file: Path

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


class TestCA:
    """A root CA kept in `folder`; `issue` makes leaf certificates signed by it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path, name: str = "MVNE Test Root CA", organization: str = "MVNE Tests") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = _name(name, organization)
        public = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        slug = name.lower().replace(" ", "-")
        self.cert_file = folder / f"{slug}.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        client: bool = False,
        organization: str = "MVNE Tests",
        hosts: tuple[str, ...] = (),
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """A leaf certificate for `common_name`, usable by a TLS server, a TLS client, or both."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        names: list[x509.GeneralName] = []
        for host in hosts or (common_name,):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(not_after or now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        cert = builder.sign(self.key, hashes.SHA256())
        slug = common_name.lower().replace(" ", "-")
        cert_file = self.folder / f"{slug}.crt"
        key_file = self.folder / f"{slug}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)
        return Issued(cert, cert_file, key_file)


@dataclass(frozen=True)
class EsPlusPki:
    """What both ends of an ES2+ channel need: one CA, the SM-DP+'s and the operator's certificates."""

    ca: TestCA
    smdp: Issued
    operator: Issued


def es2plus_pki(folder: Path, *, smdp_name: str = "smdp.sim.mvne.test") -> EsPlusPki:
    """A CA with the SM-DP+ certificate (server and client, on 127.0.0.1) and ours (the same)."""
    ca = TestCA(folder)
    smdp = ca.issue(smdp_name, server=True, client=True, hosts=(smdp_name, "localhost", "127.0.0.1"))
    operator = ca.issue("mvne.operator.test", server=True, client=True, hosts=("localhost", "127.0.0.1"))
    return EsPlusPki(ca, smdp, operator)


@contextmanager
def live_tls_server(app: Any, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` over TLS on a thread (werkzeug's server, which hands the app the peer certificate)."""
    server = make_server(host, port, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name=f"tls-server-{server.port}", daemon=True)
    thread.start()
    try:
        yield f"https://{host}:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
