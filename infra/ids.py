"""Public identifiers: a type prefix and a time-ordered, URL-safe body (`cus_01JD8...`)."""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the id made last in this process


# RFC 4648 base32 digits to Crockford's: the C encoder does the arithmetic, a table renames the digits.
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)


def new_id(prefix: str) -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, strictly increasing in this process.

    Within one millisecond the random part is incremented rather than drawn again, so ids made one
    after the other (several events of one transaction) keep their order when sorted.
    """
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` ids as `new_id` would make them one after the other, for a batch: one clock read, one encoding."""
    if count <= 0:
        return []
    global _last  # noqa: PLW0603 (the monotonic state is process-wide by nature)
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, first = last_millis, last_random + 1
        else:
            first = int.from_bytes(os.urandom(10), "big")
        if first + count > 1 << _RANDOM_BITS:  # the ids would run past the millisecond: start the next one
            millis, first = millis + 1, int.from_bytes(os.urandom(10), "big") >> 1
        _last = (millis, first + count - 1)
    stamp = millis << _RANDOM_BITS
    raw = b"".join((stamp | (first + n)).to_bytes(20, "big") for n in range(count))
    digits = base64.b32encode(raw).decode("ascii").translate(_FROM_RFC4648)
    # Each 20-byte value is 32 Crockford digits; the top 6 are zero (128 bits used of 160), the last 26 the body.
    return [f"{prefix}_{digits[at + 6 : at + 32]}" for at in range(0, 32 * count, 32)]
