"""The default decision sink: JSON-lines segment files in a directory, rotated by size.

Each process writes its own segment (``decisions-<UTC start>-<pid>-<n>.jsonl``), so several workers
never interleave lines; a segment is closed and a new one started past ``max_bytes``; beyond
``max_files`` segments the oldest are deleted. Segments are never renamed, so a reader never
misses a line to a rotation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec

from rtserve.observability.decisions.record import Decision, DecisionQuery

PATTERN = "decisions-*.jsonl"


class JsonlSink:
    """Appends decisions as JSON lines to size-rotated segment files.

    Args:
        directory: where segments live (created on open).
        max_bytes: a segment is closed once it grows past this.
        max_files: segments kept in the directory (oldest deleted first).
    """

    name = "jsonl"

    def __init__(
        self, directory: str | Path, *, max_bytes: int = 64 << 20, max_files: int = 20
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._file: IO[bytes] | None = None
        self._size = 0
        self._sequence = 0
        self._encoder = msgspec.json.Encoder()

    @property
    def current(self) -> Path | None:
        """The segment being written now."""
        return Path(self._file.name) if self._file is not None else None

    def open(self) -> None:
        """Create the directory; the first segment is created on the first write."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, decisions: Sequence[Decision]) -> None:
        """Append one line per decision and flush (rotating first when the segment is full)."""
        if not decisions:
            return
        data = self._encoder.encode_lines(decisions)
        target = self._file
        if target is None or self._size >= self.max_bytes:
            target = self._rotate()
        target.write(data)
        target.flush()
        self._size += len(data)

    def close(self) -> None:
        """Close the current segment."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self) -> IO[bytes]:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._sequence += 1
        path = self.directory / f"decisions-{stamp}-{os.getpid()}-{self._sequence}.jsonl"
        self._file = path.open("ab")
        self._size = 0
        self._retain(keep=path)
        return self._file

    def _retain(self, keep: Path) -> None:
        segments = sorted(self.directory.glob(PATTERN), key=_age_key)
        excess = len(segments) - self.max_files
        for old in segments:
            if excess <= 0:
                break
            if old != keep:
                old.unlink(missing_ok=True)
                excess -= 1


class JsonlReader:
    """Reads the segments of a decision directory (a partly written last line is skipped)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def query(self, query: DecisionQuery) -> list[Decision]:
        """Matching decisions in time order, at most ``query.limit``."""
        found: list[Decision] = []
        for segment in sorted(self.directory.glob(PATTERN), key=_age_key):
            try:
                lines = segment.read_bytes().splitlines()
            except FileNotFoundError:  # deleted by retention while we listed
                continue
            for line in lines:
                try:
                    decision = Decision.from_json(line)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                if query.matches(decision):
                    found.append(decision)
        found.sort(key=lambda d: (d.time, d.request_id, d.row))
        return found[: query.limit]


def _age_key(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)
