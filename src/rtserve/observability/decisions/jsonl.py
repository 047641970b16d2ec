"""The default decision sink: JSON-lines segment files in a directory, rotated by size.

Each process writes its own segment (``decisions-<UTC start>-<pid>-<n>.jsonl``), so several workers
never interleave lines. A segment never grows past ``max_bytes``: a line that would cross it goes
to a new segment. A single record longer than ``max_bytes`` (large recorded inputs) is written
without its inputs; if it is still too long it is written alone in a segment of its own, and
both cases log a warning. Beyond ``max_files`` segments the oldest are deleted. Segments are never
renamed, so a reader never misses a line to a rotation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec

from rtserve.observability.decisions.record import Decision, DecisionQuery

PATTERN = "decisions-*.jsonl"
logger = logging.getLogger("rtserve.observability")


class JsonlSink:
    """Appends decisions as JSON lines to size-rotated segment files.

    Args:
        directory: where segments live (created on open).
        max_bytes: the most bytes a segment holds (see the module docstring for one record
            longer than that).
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
        """Append one line per decision and flush, starting a new segment before a line that
        would take the current one past ``max_bytes``."""
        if not decisions:
            return
        data = self._encoder.encode_lines(decisions)
        if self._file is not None and self._size + len(data) <= self.max_bytes:
            self._append(data)  # the usual case: the whole batch fits
            return
        chunk = bytearray()  # lines bound for the current segment
        for decision in decisions:
            line = self._line(decision)
            held = self._size + len(chunk)
            if self._file is None or (held and held + len(line) > self.max_bytes):
                if chunk:
                    self._append(chunk)
                    chunk.clear()
                self._rotate()
            chunk += line
        if chunk:
            self._append(chunk)

    def close(self) -> None:
        """Close the current segment."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, data: bytes | bytearray) -> None:
        if self._file is None:  # ``write`` rotates before the first append
            raise RuntimeError("no open decision segment")
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _line(self, decision: Decision) -> bytes:
        """One decision's line, without its inputs when it would not fit in a segment."""
        line = self._encoder.encode(decision) + b"\n"
        if len(line) <= self.max_bytes:
            return line
        if decision.inputs is not None:
            shorter = self._encoder.encode(msgspec.structs.replace(decision, inputs=None)) + b"\n"
            logger.warning(
                "decision %s row %d is %d bytes, over decision_log.max_bytes %d: written "
                "without its inputs",
                decision.server_id, decision.row, len(line), self.max_bytes,
            )  # fmt: skip
            line = shorter
        if len(line) > self.max_bytes:
            logger.warning(
                "decision %s row %d is %d bytes, over decision_log.max_bytes %d even without "
                "inputs: written alone in a segment of its own",
                decision.server_id, decision.row, len(line), self.max_bytes,
            )  # fmt: skip
        return line

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
    """Reads the segments of a decision directory, or one segment file (a partly written last
    line is skipped)."""

    def __init__(self, path: str | Path) -> None:
        self.directory = Path(path)

    def query(self, query: DecisionQuery) -> list[Decision]:
        """Matching decisions in time order, at most ``query.limit``."""
        found: list[Decision] = []
        if self.directory.is_file():
            segments = [self.directory]
        else:
            segments = sorted(self.directory.glob(PATTERN), key=_age_key)
        for segment in segments:
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
        found.sort(key=lambda d: (d.time, d.request_id, d.server_id, d.row))
        return found[: query.limit]


def _age_key(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)
