"""Where the compared rows come from: a table file, or live traffic kept in the decision log.

A table file (parquet, CSV, JSON Lines) is read in batches by ``rtserve.deploy.batch`` (the reader
``rtserve predict`` and ``rtserve batch`` use). ``decisions:PATH`` reads the JSON-lines decision
log instead (a directory of segments, or one segment file); its records carry the request's
inputs only when the server ran with ``decision_log.include_inputs`` on, so a log without them is
refused with that setting named, and a record without them (one written too large for a
segment) is set aside with its reason. A query after ``?`` chooses the records::

    decisions:/var/lib/rtserve/decisions?model=fraud&version=3&since=2024-05-01T00:00:00Z&limit=50000
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd

from rtserve.deploy import batch
from rtserve.errors import ComparisonError
from rtserve.observability.decisions import Decision, DecisionQuery, JsonlReader

#: ``--data decisions:PATH`` reads the decision log at PATH.
DECISIONS_PREFIX = "decisions:"
#: Decision records read unless ``limit=`` says otherwise (the reader holds them all at once).
DEFAULT_DECISION_LIMIT = 100_000
#: The keys a ``decisions:`` query accepts.
DECISION_KEYS = ("model", "version", "since", "until", "limit")
#: How a setting that records inputs is named in messages.
INPUTS_SETTING = (
    "decision_log.include_inputs: true in the server's settings "
    "(RTSERVE_DECISION_LOG__INCLUDE_INPUTS=true)"
)


@dataclass(frozen=True)
class Chunk:
    """Consecutive source rows; ``start`` is the position of the first one in the source.

    ``keys`` name decision-log rows (``<server id>/<row>``) so a set-aside row can be found in
    the log; ``unreadable`` holds rows (positions in this chunk) set aside before any model saw
    them, with the reason.
    """

    start: int
    rows: list[dict[str, Any]] | pd.DataFrame
    keys: list[str] | None = None
    unreadable: dict[int, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Rows in this chunk."""
        return len(self.rows)


@dataclass(frozen=True)
class DecisionFilter:
    """Which decision records to compare on (``decisions:PATH?model=...&version=...``)."""

    model: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_DECISION_LIMIT

    def query(self) -> DecisionQuery:
        """The decision log's own query for these filters."""
        return DecisionQuery(
            model=self.model,
            version=self.version,
            since=self.since,
            until=self.until,
            limit=self.limit,
        )

    def describe(self) -> str:
        """``model=fraud, version=3`` (the filters given), or ``all records``."""
        given = [
            f"{name}={value.isoformat() if isinstance(value, datetime) else value}"
            for name, value in (
                ("model", self.model),
                ("version", self.version),
                ("since", self.since),
                ("until", self.until),
            )
            if value is not None
        ]
        return ", ".join(given) or "all records"


@dataclass
class Source:
    """Rows to compare: a table file (``decisions`` None) or a decision log with its filter.

    ``served`` is filled while a decision log is read: how many of its rows each served model
    version (``name:version digest``) answered.
    """

    path: Path
    decisions: DecisionFilter | None = None
    served: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """One line for the report: what was read."""
        if self.decisions is None:
            return f"table {self.path}"
        return f"decision log {self.path} ({self.decisions.describe()})"

    def chunks(self, batch_size: int, string_fields: list[str]) -> Iterator[Chunk]:
        """The rows in chunks of at most ``batch_size``.

        ``string_fields`` are read as text from CSV (so that e.g. ``01234`` stays a string).
        """
        if self.decisions is None:
            for found in batch.read_batches(self.path, batch_size, string_fields):
                yield Chunk(found.start, found.rows)
            return
        yield from self._decision_chunks(self.decisions, batch_size)

    def _decision_chunks(self, wanted: DecisionFilter, batch_size: int) -> Iterator[Chunk]:
        records = read_decisions(self.path, wanted)
        for record in records:
            self.served[f"{record.model}:{record.version} {record.digest}"] += 1
        for start in range(0, len(records), batch_size):
            part = records[start : start + batch_size]
            yield Chunk(
                start,
                [dict(r.inputs) if r.inputs is not None else {} for r in part],
                keys=[f"{r.server_id or r.request_id}/{r.row}" for r in part],
                unreadable={
                    i: f"the decision record has no inputs (logged without them: enable "
                    f"{INPUTS_SETTING}, and keep records under decision_log.max_bytes)"
                    for i, r in enumerate(part)
                    if r.inputs is None
                },
            )


def parse_source(text: str) -> Source:
    """``--data``: a table file, or ``decisions:PATH[?model=..&version=..&since=..&until=..&limit=..]``.

    Raises:
        ComparisonError: no such file, an extension rtserve does not read, a bad query.
    """
    if not text.startswith(DECISIONS_PREFIX):
        path = Path(text)
        if batch.format_of(path) is None:
            raise ComparisonError(
                f"--data {text}: expected a table file ending in {', '.join(batch.FORMATS)}, "
                f"or {DECISIONS_PREFIX}PATH for the decision log",
                field="data",
            )
        if not path.is_file():
            raise ComparisonError(f"--data {text}: no such file", field="data")
        return Source(path)
    location, _, query = text.removeprefix(DECISIONS_PREFIX).partition("?")
    if not location:
        raise ComparisonError(
            f"--data {text}: name the decision log after '{DECISIONS_PREFIX}' "
            f"(e.g. {DECISIONS_PREFIX}/var/lib/rtserve/decisions?model=fraud)",
            field="data",
        )
    path = Path(location)
    if not path.exists():
        raise ComparisonError(
            f"--data {text}: no decision log at {path} (a directory of decisions-*.jsonl "
            "segments, or one segment file)",
            field="data",
        )
    return Source(path, _decision_filter(text, query))


def _decision_filter(text: str, query: str) -> DecisionFilter:
    # Split by hand rather than with parse_qsl: a '+' in a time zone (12:00+02:00) must stay one.
    pairs = [part.partition("=") for part in query.split("&")] if query else []
    options: dict[str, str] = {}
    for raw_key, _, raw_value in pairs:
        key, value = unquote(raw_key), unquote(raw_value)
        if key not in DECISION_KEYS:
            raise ComparisonError(
                f"--data {text}: unknown key {key!r}; a decision-log query accepts "
                f"{', '.join(DECISION_KEYS)}",
                field="data",
            )
        if key in options:
            raise ComparisonError(f"--data {text}: {key} is given twice", field="data")
        if not value:
            raise ComparisonError(f"--data {text}: {key} needs a value ({key}=...)", field="data")
        options[key] = value
    limit = DEFAULT_DECISION_LIMIT
    if "limit" in options:
        try:
            limit = int(options["limit"])
        except ValueError:
            limit = 0
        if limit < 1:
            raise ComparisonError(
                f"--data {text}: limit must be a whole number of records, at least 1, "
                f"got {options['limit']!r}",
                field="data",
            )
    return DecisionFilter(
        model=options.get("model"),
        version=options.get("version"),
        since=_moment(text, "since", options.get("since")),
        until=_moment(text, "until", options.get("until")),
        limit=limit,
    )


def _moment(text: str, key: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ComparisonError(
            f"--data {text}: {key} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, "
            f"got {value!r}",
            field="data",
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_decisions(path: Path, wanted: DecisionFilter) -> list[Decision]:
    """The matching decision records in time order, checked to be comparable.

    Raises:
        ComparisonError: none match; they come from several models (choose one with
            ``model=``); none carries inputs (the server did not record them).
    """
    query = wanted.query()
    records = JsonlReader(path).query(query)
    where = f"{DECISIONS_PREFIX}{path}"
    if not records:
        raise ComparisonError(
            f"{where}: no decision record matches ({wanted.describe()})", field="data"
        )
    models = sorted({r.model for r in records})
    if len(models) > 1:
        raise ComparisonError(
            f"{where}: the records come from {len(models)} models ({', '.join(models)}); "
            f"choose one with {where}?model=NAME",
            field="data",
        )
    if all(r.inputs is None for r in records):
        raise ComparisonError(
            f"{where}: none of the {len(records)} decision records carries its inputs, so "
            f"there is nothing to score; turn on {INPUTS_SETTING} and compare on the traffic "
            "logged after that",
            field="data",
        )
    return records


def is_missing(value: Any) -> bool:
    """None, NaN or a pandas NA: a value that is not there."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return False
