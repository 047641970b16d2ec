"""One decision-log record per predicted row, and the query that finds them again.

A record carries two ids. ``request_id`` is the ``X-Request-ID`` the request was answered under:
the client's own when it sent one, kept for correlation, so two requests may share it.
``server_id`` is made here, once per prediction event, and never repeats (a random prefix per
process and a counter): ``(server_id, row)`` is the record's key, and a lookup by either id
finds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import numpy as np

from rtserve.bundle.schema import Schema
from rtserve.events import PredictionEvent, parse_traceparent
from rtserve.observability.ids import UniqueIds
from rtserve.observability.redaction import Redactor
from rtserve.runtimes.base import ModelOutput


class Decision(msgspec.Struct, frozen=True):
    """Which model version decided what for one row of one request, and how fast.

    A msgspec struct: the decision log writes one per predicted row, so creating and encoding
    it must cost next to nothing.
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
    """One ``Decision`` per row of several events of one model version; each event gets its own
    ``server_id`` (its rows share it, numbered by ``row``).

    The events' columns are joined first, so converting, hashing and shaping outputs run once
    per batch rather than once per request (most online requests hold a single row).
    """
    if not events:
        return []
    pii: Collection[str] = schema.pii_fields if schema is not None else ()
    names = sorted(events[0].columns)  # sorted keys: each row's dict encodes canonically as built
    if len(events) == 1:
        values = [events[0].columns[n].tolist() for n in names]
    else:
        values = [np.concatenate([e.columns[n] for e in events]).tolist() for n in names]
    records = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    if pii:
        hashes = [redactor.input_hash(record, pii) for record in records]
    else:
        encode, sha256 = msgspec.json.encode, hashlib.sha256
        hashes = ["sha256:" + sha256(encode(record)).hexdigest() for record in records]
    if not include_inputs:
        inputs = None
    else:  # each record is a fresh dict already: copy it only to redact PII fields
        inputs = [redactor.record(r, pii) for r in records] if pii else records
    outputs = _row_outputs(ModelOutput.concat([e.output for e in events]), len(records), schema)
    result: list[Decision] = []
    i = 0
    for event in events:
        parsed = parse_traceparent(event.traceparent) if event.traceparent else None
        trace_id = parsed[0] if parsed else None
        when = datetime.fromtimestamp(event.time, UTC)
        shared = (event.model, event.version, event.digest, event.protocol)
        server_id = new_server_id()
        for row in range(event.rows):
            # positional, in the struct's field order: a keyword call costs twice as much per row
            decision = Decision(
                event.request_id,
                row,
                when,
                *shared,
                hashes[i],
                outputs[i],
                event.latency_seconds,
                event.fallback,
                event.variant,
                trace_id,
                inputs[i] if inputs is not None else None,
                server_id,
            )
            result.append(decision)
            i += 1
    return result


def _row_outputs(out: ModelOutput, n_rows: int, schema: Schema | None) -> list[dict[str, Any]]:
    classes = [str(c) for c in schema.outputs.classes or []] if schema is not None else []
    labels = out.label.tolist() if out.label is not None else None
    probs = out.probabilities.tolist() if out.probabilities is not None else None
    if probs is not None and probs and len(probs[0]) == len(classes):
        probs = [dict(zip(classes, p, strict=True)) for p in probs]
    if labels is not None and probs is not None:
        return [{"label": a, "probabilities": b} for a, b in zip(labels, probs, strict=True)]
    if labels is not None:
        return [{"label": a} for a in labels]
    if probs is not None:
        return [{"probabilities": b} for b in probs]
    if out.value is not None:
        return [{"value": v} for v in out.value.tolist()]
    return [{} for _ in range(n_rows)]
