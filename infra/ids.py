"""Public identifiers: a type prefix and a time-ordered, URL-safe body (`cus_01JD8...`)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the id made last in this process


# Every pair of Crockford digits, by the 10 bits they spell: an id's body is read off 10 bits at a time.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_TEN_BITS = (1 << 10) - 1


def _digits(value: int, pairs: int) -> str:
    """`value` as 2 * `pairs` Crockford digits, most significant first."""
    return "".join([_PAIRS[(value >> shift) & _TEN_BITS] for shift in range(10 * (pairs - 1), -1, -10)])


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
    return _bodies(prefix, millis, first, count)


def _bodies(prefix: str, millis: int, first: int, count: int) -> list[str]:
    """The ids of random parts `first` to `first + count - 1` in millisecond `millis`.

    The body is the 128-bit value in 26 digits: the milliseconds in the first 10 (50 bits, the top 2 zero), the
    random part in the last 16 (80 bits). Consecutive random parts share their top 40 bits, but at a carry.
    """
    head = f"{prefix}_{_digits(millis, 5)}"
    made: list[str] = []
    high_bits, high = -1, ""
    for value in range(first, first + count):
        if value >> 40 != high_bits:
            high_bits = value >> 40
            high = head + _digits(high_bits, 4)
        low = value & 0xFF_FFFF_FFFF
        made.append(
            high + _PAIRS[low >> 30] + _PAIRS[(low >> 20) & _TEN_BITS] + _PAIRS[(low >> 10) & _TEN_BITS]
            + _PAIRS[low & _TEN_BITS]
        )  # fmt: skip
    return made
