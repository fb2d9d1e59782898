"""Secrets for embedded mode: generated once under `var/secrets/` so restarts keep tokens and SIM keys valid.

Production mode never generates: settings must carry them (checked at start).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mvne.infra.settings import Settings


def _read_or_create(path: Path, make: bytes) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(make)
    return make.decode().strip()


def generate_rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def generate_sim_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def with_embedded_secrets(settings: Settings) -> Settings:
    """Fill the secrets embedded mode may generate; leave production settings untouched."""
    if settings.is_production:
        return settings
    folder = settings.var_dir / "secrets"
    changes: dict[str, str] = {}
    if not settings.secret_key:
        changes["secret_key"] = _read_or_create(folder / "secret_key", secrets.token_urlsafe(48).encode())
    if not settings.jwt_private_key:
        path = folder / "jwt_private_key.pem"
        changes["jwt_private_key"] = (
            _read_or_create(path, generate_rsa_pem().encode()) if not path.exists() else path.read_text()
        )
    if not settings.sim_key:
        changes["sim_key"] = _read_or_create(folder / "sim_key", generate_sim_key().encode())
    return settings.with_overrides(**changes) if changes else settings
