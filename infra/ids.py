"""Public identifiers: a type prefix and a time-ordered, URL-safe body (`cus_01JD8...`)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the id made last in this process


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, strictly increasing in this process.

    Within one millisecond the random part is incremented rather than drawn again, so ids made one
    after the other (several events of one transaction) keep their order when sorted.
    """
    global _last  # noqa: PLW0603 (the monotonic state is process-wide by nature)
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, random_part = last_millis, last_random + 1
            if random_part >= 1 << _RANDOM_BITS:  # 2^80 ids in one millisecond: borrow the next one
                millis, random_part = millis + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            random_part = int.from_bytes(os.urandom(10), "big")
        _last = (millis, random_part)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random_part, 16)}"
