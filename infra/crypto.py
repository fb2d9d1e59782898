"""Encryption at rest for secrets (SIM Ki and OPc, webhook signing secrets): AES-256-GCM, versioned blobs."""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = 1
_VERSION_BYTE = bytes([VERSION])
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class SecretBoxError(Exception):
    """A blob could not be decrypted: tampered, truncated, another key, or an unknown version."""


def generate_key() -> str:
    """Return a new random 256-bit key as urlsafe base64, ready for a setting."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


class SecretBox:
    """AES-256-GCM box: blob = version (1 byte) + nonce (12 bytes) + ciphertext + tag."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"SecretBox key must be {KEY_BYTES} bytes")
        # Only the AEAD object is kept, so no attribute holds the raw key for a repr or a debugger dump.
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """Build a box from a urlsafe-base64 32-byte key, as stored in settings."""
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            raise ValueError("SIM secrets key setting is empty; generate one with mvne.infra.crypto.generate_key()")
        if not _URLSAFE_B64.fullmatch(text):
            raise ValueError("SIM secrets key setting is not urlsafe base64 (allowed: A-Z a-z 0-9 - _ =)")
        try:
            key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            raise ValueError("SIM secrets key setting is not valid urlsafe base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"SIM secrets key setting decodes to {len(key)} bytes; it must be {KEY_BYTES}")
        return cls(key)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt `plaintext` bound to `aad` (e.g. the SIM id), with a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        # The version byte is authenticated too, so it cannot be swapped to downgrade the format.
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, plaintext, _VERSION_BYTE + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a blob made by `encrypt` with the same `aad`; SecretBoxError if it does not verify."""
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
            raise SecretBoxError("encrypted blob is too short")
        if blob[:1] != _VERSION_BYTE:
            raise SecretBoxError(f"unsupported encrypted blob version {blob[0]}")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], _VERSION_BYTE + aad)
        except InvalidTag:
            raise SecretBoxError("encrypted blob failed authentication (tampered, other key or other aad)") from None

    def __repr__(self) -> str:
        return "SecretBox(key=<redacted>)"
