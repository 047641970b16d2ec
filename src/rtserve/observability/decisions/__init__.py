"""The decision log: which model version made which decision, one record per predicted row."""

from __future__ import annotations

from pathlib import Path

from rtserve.observability.decisions.jsonl import JsonlReader, JsonlSink
from rtserve.observability.decisions.observer import DecisionLogObserver
from rtserve.observability.decisions.record import (
    Decision,
    DecisionQuery,
    DecisionReader,
    DecisionSink,
)
from rtserve.observability.decisions.sql import SqlReader, SqlSink

__all__ = [
    "Decision",
    "DecisionLogObserver",
    "DecisionQuery",
    "DecisionReader",
    "DecisionSink",
    "JsonlReader",
    "JsonlSink",
    "SqlReader",
    "SqlSink",
    "reader_for",
]


def reader_for(
    *, directory: str | Path | None = None, database_url: str | None = None
) -> DecisionReader:
    """A reader for the SQL sink when a URL is given, else for the JSON-lines directory."""
    if database_url:
        return SqlReader(database_url)
    if directory is None:
        raise ValueError("give a decision directory or a database URL")
    return JsonlReader(directory)
