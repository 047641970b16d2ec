"""What one request carries through the pipeline, the event it ends in, and who listens to it.

The transport creates one ``RequestTrace`` per request and passes it explicitly through the data
plane into the batcher; each step writes its facts into it (model version chosen, validation and
batch timings, rows, fallback, violations). The engine builds a ``PredictionEvent`` from it and
the answer for the observers (metrics, drift, decision log); the transport hands the finished
trace to the access log, request metrics and tracing. Both sides read these dataclasses, which
is why this module sits below the engine and observability in the layer order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


@dataclass(slots=True)
class BatchInfo:
    """How a request travelled through the batcher."""

    queue_seconds: float  # from submit until its batch started
    predict_seconds: float  # the runtime's predict call for the whole batch
    batch_rows: int  # rows in the batch this request rode in
    batch_requests: int  # requests in that batch


#: W3C trace-context ``traceparent``: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` of a valid W3C ``traceparent`` header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return match.group(1), match.group(2)


@dataclass(slots=True)
class RequestTrace:
    """One request on its way: what it carries in, and the facts each step adds.

    Created by the transport and passed explicitly (never through a ContextVar), so the data
    flow is visible in signatures. A slots dataclass with immutable defaults: creating one is
    the only per-request cost. Times are ``time.perf_counter`` values (0.0: did not happen).
    """

    request_id: str
    started: float  # when the transport took the request
    traceparent: str | None = None  # the incoming W3C header, kept only when valid
    protocol: str = ""  # "v2" or "records", set by the data plane
    #: The served model version chosen to answer (``DataPlane.route``); "" before routing.
    model: str = ""
    version: str = ""
    #: Why that version answers under a rollout: production, canary, ab:VERSION, pinned;
    #: "" when no rollout applies to the model.
    variant: str = ""
    validate_started: float = 0.0
    validated: float = 0.0
    #: (field label, rule) per violation; labels are schema field names or ``_unknown``.
    violations: tuple[tuple[str, str], ...] = ()
    rows: int = 0  # rows answered (0 until the prediction is known)
    batch: BatchInfo | None = None  # how the answer travelled through the batcher
    predicted: float = 0.0  # when the answer was known
    fallback: bool = False  # a fallback answered, not the model
    #: Set by the transport: called when the request starts waiting for work done elsewhere
    #: (queued past ``LONG_WAIT_S``, decoding in a thread), so that it can start watching for a
    #: client disconnect, which a request answered at once never needs. Must be idempotent.
    on_wait: Callable[[], None] | None = None

    @property
    def trace_id(self) -> str | None:
        """The trace id of the incoming ``traceparent`` (None without a valid one)."""
        parsed = parse_traceparent(self.traceparent)
        return parsed[0] if parsed else None

    def waiting(self) -> None:
        """The request is about to wait: call the transport's ``on_wait`` hook, if any."""
        if self.on_wait is not None:
            self.on_wait()

    def served_fields(self, prefix: str = "") -> dict[str, str | int | bool]:
        """The model and batch facts the access log and the request's span both carry, each name
        after ``prefix``: model and version once routed, rows, batch size and fallback once
        predicted (one mapping, so the log and the trace never disagree)."""
        fields: dict[str, str | int | bool] = {}
        if self.model:
            fields[prefix + "model"] = self.model
            fields[prefix + "version"] = self.version
            if self.variant:
                fields[prefix + "variant"] = self.variant
        if self.batch is not None:
            fields[prefix + "rows"] = self.rows
            fields[prefix + "batch_size"] = self.batch.batch_rows
            fields[prefix + "fallback"] = self.fallback
        return fields


@dataclass(slots=True)
class RequestPart:
    """One request's share of an event that answers several together (``PredictionEvent.parts``)."""

    request_id: str
    rows: int
    latency_seconds: float
    traceparent: str | None = None
    time: float = 0.0  # wall-clock (epoch seconds) when the request was accepted


@dataclass(slots=True)
class PredictionEvent:
    """One answered prediction request (all rows of it), or several answered together, for
    metrics, drift and decision logs.

    ``parts`` is empty for one request. For a group (the records lane's), ``parts`` lists its
    requests in row order, ``columns``/``output``/``rows`` are all of theirs, and
    ``request_id``, ``time``, ``latency_seconds`` and ``traceparent`` are the first request's;
    ``requests()`` gives each request's part either way.
    """

    request_id: str
    time: float  # wall-clock (epoch seconds) when the request was accepted
    model: str
    version: str
    digest: str
    protocol: str  # "v2" or "records"
    columns: Columns  # validated inputs; observers must not mutate them
    output: ModelOutput
    rows: int
    latency_seconds: float  # validation + queue + predict, as the data plane saw it
    batch: BatchInfo
    fallback: bool = False
    variant: str = ""
    traceparent: str | None = None
    parts: tuple[RequestPart, ...] = ()

    def requests(self) -> tuple[RequestPart, ...]:
        """Each request of the event with its rows, in row order."""
        if self.parts:
            return self.parts
        return (
            RequestPart(
                self.request_id, self.rows, self.latency_seconds, self.traceparent, self.time
            ),
        )


class Observer(Protocol):
    """Something that learns from predictions off the hot path (metrics, drift, decision log).

    ``observe`` is called on the event loop right after a request's outputs are known. It must
    return at once: hand the event to a bounded queue and drop (and count) when the queue is full.
    """

    def observe(self, event: PredictionEvent) -> None:
        """Record one event without blocking."""
