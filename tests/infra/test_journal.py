"""The simulators' state file: one appended line per change, replayed in order, rewritten once it has grown."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvne.infra.journal import REWRITE_AFTER_LINES, JournalFile


def replay(path: Path) -> dict[str, int]:
    state: dict[str, int] = {}
    _, entries = JournalFile(path, format_version=2).read()
    for entry in entries:
        if entry.get("reset"):
            state.clear()
        else:
            state[entry["key"]] = entry["value"]
    return state


def test_entries_replay_in_order_with_resets_and_survive_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = JournalFile(path, format_version=2)
    journal.rewrite({"name": "x"}, [])
    journal.append([{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    journal.append([{"reset": True}, {"key": "a", "value": 3}])
    journal.append([{"key": "a", "value": 4}])
    assert replay(path) == {"a": 4}
    header, _ = journal.read()
    assert header == {"name": "x", "format": 2}

    journal.rewrite({"name": "x"}, [{"key": "a", "value": 4}])
    assert path.read_text().count("\n") == 2
    assert replay(path) == {"a": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_an_append_cut_short_by_a_crash_is_dropped_but_a_broken_line_before_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = JournalFile(path, format_version=2)
    journal.rewrite({}, [{"key": "a", "value": 1}])
    with path.open("a") as handle:
        handle.write('{"key": "a", "val')  # the process died in the middle of this line
    assert replay(path) == {"a": 1}

    with path.open("a") as handle:
        handle.write('\n{"key": "b", "value": 2}\n')
    with pytest.raises(ValueError, match="Unterminated string"):
        replay(path)


def test_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    JournalFile(path, format_version=3).rewrite({}, [])
    with pytest.raises(ValueError, match="format 3"):
        JournalFile(path, format_version=2).read()


def test_a_rewrite_is_due_only_once_superseded_lines_outnumber_the_live_state(tmp_path: Path) -> None:
    journal = JournalFile(tmp_path / "state.json", format_version=2)
    journal.rewrite({}, [])
    journal.append({"key": str(n), "value": n} for n in range(REWRITE_AFTER_LINES - 1))
    assert not journal.grown(live=10)
    journal.append([{"key": "last", "value": 0}])
    assert journal.grown(live=10)
    assert not journal.grown(live=5 * REWRITE_AFTER_LINES)
    journal.rewrite({}, [])
    assert not journal.grown(live=10)
