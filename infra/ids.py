"""Public identifiers: a type prefix and a time-ordered, URL-safe body (`cus_01JD8...`)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, so ids sort by creation."""
    millis = time.time_ns() // 1_000_000
    body = _encode(millis, 10) + _encode(int.from_bytes(os.urandom(10), "big"), 16)
    return f"{prefix}_{body}"


def prefix_of(identifier: str) -> str:
    return identifier.split("_", 1)[0]
