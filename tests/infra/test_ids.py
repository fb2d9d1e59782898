"""Ids made in batches are the ids made one by one would be: same shape, unique, in the order made."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvne.infra import ids
from mvne.infra.ids import new_id, new_ids

SHAPE = re.compile(r"usg_[0-9A-HJKMNP-TV-Z]{26}")


def test_a_batch_of_ids_is_unique_increasing_and_shaped_like_single_ids() -> None:
    before = new_id("usg")
    batch = new_ids("usg", 5000)
    after = new_id("usg")
    made = [before, *batch, after]
    assert all(SHAPE.fullmatch(one) for one in made)
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert new_ids("usg", 0) == []


def test_a_batch_that_would_overflow_the_millisecond_starts_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_last", (ids.time.time_ns() // 1_000_000 + 60_000, (1 << ids._RANDOM_BITS) - 2))
    last = new_id("usg")
    batch = new_ids("usg", 10)
    assert [last, *batch] == sorted({last, *batch})
    assert batch[0][4:14] != last[4:14]  # the millisecond part moved on


def _reference(prefix: str, millis: int, random: int) -> str:
    """The id as RFC 4648 base32 of the 128-bit value spells it, its digits renamed to Crockford's."""
    value = (millis << ids._RANDOM_BITS) | random
    digits = (
        base64.b32encode(value.to_bytes(20, "big"))
        .decode()
        .translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ids._ALPHABET))
    )
    return f"{prefix}_{digits[6:]}"  # 32 digits of 160 bits: the first 6 (30 bits) are zero


@settings(max_examples=300, deadline=None)
@given(
    millis=st.integers(min_value=0, max_value=(1 << 48) - 1),
    first=st.integers(min_value=0, max_value=(1 << 80) - 1),
    count=st.integers(min_value=1, max_value=40),
)
def test_ids_spell_the_milliseconds_and_random_part_in_crockford_base32(millis: int, first: int, count: int) -> None:
    first = min(first, (1 << 80) - count)  # as new_ids keeps it: the ids stay in their millisecond

    made = ids._bodies("usg", millis, first, count)

    assert made == [_reference("usg", millis, first + n) for n in range(count)]


def test_ids_across_a_carry_of_the_random_parts_top_half() -> None:
    first = (1 << 40) - 2  # the low 40 bits run over within the batch

    assert ids._bodies("sub", 1_700_000_000_000, first, 4) == [
        _reference("sub", 1_700_000_000_000, first + n) for n in range(4)
    ]
