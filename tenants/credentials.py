"""API client secrets at rest: argon2id hashes, and the sha256 digests kept before them.

A secret is a 256-bit random string shown once; only its argon2id hash is stored (parameters of
OWASP's argon2id baseline: 19 MiB of memory, 2 passes, 1 lane, about 40 ms a check). Digests
stored before argon2 (hex sha256) still verify, and are replaced by an argon2id hash at the
client's next successful use (`needs_rehash`).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ARGON2ID_PREFIX = "$argon2id$"
_LEGACY_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_secret(secret: str) -> str:
    """The argon2id hash of a secret, with its parameters and salt (`$argon2id$v=19$m=...`)."""
    return _hasher.hash(secret)


def verify_secret(stored: str, secret: str) -> bool:
    """Whether `secret` matches a stored argon2 hash or legacy sha256 digest."""
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return False
    if _LEGACY_SHA256.fullmatch(stored):
        return hmac.compare_digest(stored, hashlib.sha256(secret.encode()).hexdigest())
    return False


def needs_rehash(stored: str) -> bool:
    """A legacy digest, or an argon2 hash made with other parameters than today's."""
    if not stored.startswith(ARGON2ID_PREFIX):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
