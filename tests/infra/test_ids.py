"""Ids made in batches are the ids made one by one would be: same shape, unique, in the order made."""

from __future__ import annotations

import re

import pytest

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
