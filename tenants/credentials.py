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
from zxcvbn import zxcvbn

from mvne.tenants.errors import WeakPassword

ARGON2ID_PREFIX = "$argon2id$"
# People's passwords (staff, founders, subscribers): long enough, not guessable, bounded (argon2 hashes
# every byte it is given; a megabyte "password" would be a cheap denial of service).
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
PASSWORD_MIN_SCORE = 3  # zxcvbn's 0-4: 3 is "safely unguessable: moderate protection from offline attacks"
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


def check_password(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """Refuse a weak password with 422 `weak_password`, naming the field and the fix.

    Weak means: shorter than 10 or longer than 128 characters, or guessable from dictionaries, names,
    keyboard walks, dates and common substitutions (zxcvbn score under 3), including the words of
    `user_inputs` (the person's e-mail, name, company: a password made of them is weak).
    """
    problem: str | None = None
    if len(password) < PASSWORD_MIN_LENGTH:
        problem = f"Use at least {PASSWORD_MIN_LENGTH} characters."
    elif len(password) > PASSWORD_MAX_LENGTH:
        problem = f"Use at most {PASSWORD_MAX_LENGTH} characters."
    else:
        inputs = [*(v.lower() for v in user_inputs), *(word for value in user_inputs for word in _words(value))]
        verdict = zxcvbn(password, user_inputs=inputs)
        if verdict["score"] < PASSWORD_MIN_SCORE:
            feedback = verdict.get("feedback") or {}
            hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
            problem = " ".join(h for h in hints if h) or "Add more words or characters that are hard to guess."
    if problem is not None:
        raise WeakPassword(
            f"The password is too weak: {problem}",
            errors={"password": [f"Too weak: {problem} A passphrase of four or more unrelated words works well."]},
        )


def _words(value: str) -> list[str]:
    """An e-mail or a name split into the words a person might build a password from."""
    return [w for w in re.split(r"[^0-9A-Za-z]+", value.lower()) if len(w) >= 3]
