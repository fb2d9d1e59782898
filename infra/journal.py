"""A state file kept as JSON lines: a header, then one line per change, rewritten whole once it has grown.

The simulators keep their state in such a file so that a change costs one appended line, whatever
the state's size (writing the whole state on every change made each call slower than the last).
Every entry is a whole value put under a key, or a reset, so replaying the lines in order rebuilds
the state, and a rewrite that died before its rename leaves the old file to replay. A crash in the
middle of an append leaves a last line cut short: it is dropped on reading, as the change it held was
never acknowledged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# A rewrite comes after at least this many appended lines, and never before the file holds twice the live state.
REWRITE_AFTER_LINES = 1000


class JournalFile:
    """One simulator's state file: `read()` at start, `append()` per change, `rewrite()` when `grown()`."""

    def __init__(self, path: Path, *, format_version: int) -> None:
        self.path = path
        self.format_version = format_version
        self.appended = 0

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
        """The header and the entries after it, in order; ValueError when the file is not one of ours."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("format") != self.format_version:
            raise ValueError(
                f"unknown state file format {header.get('format') if isinstance(header, dict) else None!r}"
            )
        return header, self._entries(lines[1:], complete=text.endswith("\n"))

    @staticmethod
    def _entries(lines: list[str], *, complete: bool) -> Iterator[dict[str, Any]]:
        last = len(lines) - 1
        for number, line in enumerate(lines):
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if number == last and not complete:
                    return  # an append cut short by a crash: never acknowledged, so never applied
                raise
            if not isinstance(entry, dict):
                raise ValueError(f"entry {number + 2} is not an object")
            yield entry

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Add entries at the end of the file (one line each, written in one call)."""
        lines = [json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n" for entry in entries]
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(lines))
        self.appended += len(lines)

    def grown(self, live: int) -> bool:
        """Whether the file holds enough superseded lines to be worth a rewrite, given `live` entries of state."""
        return self.appended >= max(REWRITE_AFTER_LINES, live)

    def rewrite(self, header: dict[str, Any], entries: Iterable[dict[str, Any]]) -> None:
        """Replace the file with the header and the state's entries (temporary file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({**header, "format": self.format_version}, ensure_ascii=False) + "\n")
                for entry in entries:
                    handle.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
            os.replace(tmp_name, self.path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        self.appended = 0
