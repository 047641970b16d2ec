"""One decision-log record per predicted row, and the query that finds them again.

A record carries two ids. ``request_id`` is the ``X-Request-ID`` the request was answered under:
the client's own when it sent one, kept for correlation, so two requests may share it.
``server_id`` is made here, once per prediction event, and never repeats (a random prefix per
process and a counter): ``(server_id, row)`` is the record's key, and a lookup by either id
finds it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import Any, Protocol

import msgspec

from rtserve.bundle.schema import Schema
from rtserve.events import PredictionEvent, parse_traceparent
from rtserve.observability.decisions.rows import (
    input_dicts,
    input_values,
    row_objects,
    row_outputs,
    sha256_each,
)
from rtserve.observability.ids import UniqueIds
from rtserve.observability.redaction import Redactor
from rtserve.runtimes.base import ModelOutput


class Decision(msgspec.Struct, frozen=True, gc=False):
    """Which model version decided what for one row of one request, and how fast.

    A msgspec struct: the decision log writes one per predicted row, so creating and encoding
    it must cost next to nothing. Not tracked by the garbage collector (``gc=False``): a batch
    of thousands would otherwise trigger collections, and a record never refers back to itself.
    """

    request_id: str  # the X-Request-ID (client-chosen or generated): correlation, not unique
    row: int  # position of the row in its request
    time: datetime  # UTC, when the request was accepted
    model: str
    version: str
    digest: str
    protocol: str
    input_hash: str  # sha256 of the row's canonical JSON, PII values keyed-hashed first
    output: dict[str, Any]
    latency_seconds: float
    fallback: bool = False
    variant: str = ""
    trace_id: str | None = None
    inputs: dict[str, Any] | None = None  # only when configured, PII redacted
    #: The server's own id of the prediction: with ``row`` the record's unique key ("" only in
    #: records written before it existed).
    server_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form as a dict (time as ISO 8601 UTC)."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    @classmethod
    def from_json(cls, line: bytes | str) -> Decision:
        """Read one JSON line back."""
        decision = msgspec.json.decode(line, type=cls)
        return msgspec.structs.replace(decision, time=as_utc(decision.time))


@dataclass(frozen=True)
class DecisionQuery:
    """Which decisions to read back: by request id (the ``X-Request-ID`` or the server id),
    and/or model, version and time range."""

    request_id: str | None = None
    model: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000

    def matches(self, d: Decision) -> bool:
        """Whether one decision passes every given filter."""
        return (
            (
                self.request_id is None
                or d.request_id == self.request_id
                or d.server_id == self.request_id
            )
            and (self.model is None or d.model == self.model)
            and (self.version is None or d.version == self.version)
            and (self.since is None or d.time >= self.since)
            and (self.until is None or d.time <= self.until)
        )


class DecisionSink(Protocol):
    """Where decisions go. ``open`` once before the first ``write``; ``write`` runs on the
    decision-log thread with a batch of records and may block (never the request)."""

    name: str

    def open(self) -> None:
        """Create what the sink needs (a directory, a table)."""

    def write(self, decisions: Sequence[Decision]) -> None:
        """Persist a batch of decisions."""

    def close(self) -> None:
        """Flush and release files or connections."""


class DecisionReader(Protocol):
    """Reads decisions back (the ``rtserve decisions`` command)."""

    def query(self, query: DecisionQuery) -> list[Decision]:
        """Matching decisions in time order, at most ``query.limit``."""


def as_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (naive values are taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: A fresh server id per call (see ``rtserve.observability.ids``).
new_server_id = UniqueIds()


def decisions_for(
    events: Sequence[PredictionEvent],
    schema: Schema | None,
    redactor: Redactor,
    *,
    include_inputs: bool,
) -> list[Decision]:
    """One ``Decision`` per row of several events of one model version; each request gets its
    own ``server_id`` (its rows share it, numbered by ``row``).

    The events' columns are joined first, so converting, hashing and shaping outputs run once
    per batch rather than once per request (most online requests hold a single row); the
    records are then built column-wise, one ``map`` over the rows.
    """
    if not events:
        return []
    pii: Collection[str] = schema.pii_fields if schema is not None else ()
    names = sorted(events[0].columns)  # sorted keys: each row's dict encodes canonically as built
    values = input_values(events, names)
    records = input_dicts(values, names) if pii or include_inputs else []
    if pii:
        hashes = [redactor.input_hash(record, pii) for record in records]
    else:
        hashes = sha256_each(records if include_inputs else row_objects(values, names))
    if not include_inputs:
        inputs: Iterable[dict[str, Any] | None] = repeat(None)
    else:  # each record is a fresh dict already: copy it only to redact PII fields
        inputs = [redactor.record(r, pii) for r in records] if pii else records
    n_rows = len(values[0]) if values else 0
    outputs = row_outputs(ModelOutput.concat([e.output for e in events]), n_rows, schema)
    # one entry per request: an event of the records lane answers several (``parts``)
    requests = [(e, part) for e in events for part in e.requests()]
    counts = [part.rows for _, part in requests]
    total = sum(counts)
    if min(len(hashes), len(outputs)) < total:
        raise ValueError(
            f"events of {total} rows carry {len(hashes)} rows of inputs and {len(outputs)} of "
            "outputs"
        )
    per_request = [
        (p.request_id, datetime.fromtimestamp(p.time, UTC), e.model, e.version, e.digest,
         e.protocol, p.latency_seconds, e.fallback, e.variant, _trace_id(p.traceparent), server_id)
        for (e, p), server_id in zip(requests, new_server_id.take(len(requests)), strict=True)
    ]  # fmt: skip
    columns: list[Sequence[Any]] = list(zip(*per_request, strict=True))  # per request, not row
    if counts.count(1) == len(counts):  # the usual case: one row per request
        row_numbers: Iterable[int] = repeat(0)
    else:
        row_numbers = chain.from_iterable(map(range, counts))
        columns = [list(chain.from_iterable(map(repeat, c, counts))) for c in columns]
    request_ids, times, models, versions, digests, protocols = columns[:6]
    latencies, fallbacks, variants, trace_ids, server_ids = columns[6:]
    # positional, in the struct's field order: a keyword call costs twice as much per row
    return list(
        map(
            Decision, request_ids, row_numbers, times, models, versions, digests, protocols,
            hashes, outputs, latencies, fallbacks, variants, trace_ids, inputs, server_ids,
        )
    )  # fmt: skip


def _trace_id(traceparent: str | None) -> str | None:
    parsed = parse_traceparent(traceparent) if traceparent else None
    return parsed[0] if parsed else None
