"""The end of every HTTP request: request metrics, the access-log record and trace spans.

Failed requests never reach a prediction observer, so status codes, protocol and whole-request
latency are recorded here, from the facts the transport and the data plane wrote into the
request's ``RequestTrace``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from msgspec import UNSET, UnsetType
from prometheus_client import Counter, Histogram

from rtserve.events import RequestTrace
from rtserve.observability.logging import json_line_writer
from rtserve.observability.metrics import Metrics, observe_many
from rtserve.observability.tracing import Tracer

access_logger = logging.getLogger("rtserve.access")
_ACCESS = access_logger.name


@dataclass(slots=True)
class Finished:
    """How the HTTP layer saw one request end."""

    method: str
    path: str
    protocol: str  # the route's tag: v2, records, health, observe, docs; "none" when unrouted
    endpoint: str  # the endpoint's name: infer, predict, live ...; "none" when unrouted
    status: int
    ended: float  # perf_counter when the last byte was sent


class AccessRecorder:
    """Turns finished requests into metrics, one access-log line and (optionally) spans.

    Args:
        metrics: the process's metric families; None when metrics are switched off.
        access_log: write one record per request to the ``rtserve.access`` logger.
        tracer: builds spans from the request's timings; None without tracing.
    """

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        access_log: bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.tracer = tracer
        #: Label values are bounded (served models, routes, status codes), so is this cache.
        self._children: dict[tuple[str, str, str, str, str, int], tuple[Counter, Histogram]] = {}

    def started(self, count: int = 1) -> None:
        """``count`` requests came in."""
        if self.metrics is not None:
            self.metrics.in_flight.inc(count)

    def finished(self, trace: RequestTrace, end: Finished) -> None:
        """A request ended (successfully or not); never raises into the request."""
        self.finished_many([(trace, end)])

    def finished_many(self, done: Sequence[tuple[RequestTrace, Finished]]) -> None:
        """Requests that ended together (a records-lane group): for each, what ``finished``
        records, with one update per metric child and one write for the access lines."""
        m = self.metrics
        if m is not None:
            m.in_flight.dec(len(done))
            latencies: dict[tuple[str, str, str, str, str, int], list[float]] = {}
            for trace, end in done:
                key = (trace.model, trace.version, end.protocol, end.endpoint, trace.variant,
                       end.status)  # fmt: skip
                latencies.setdefault(key, []).append(end.ended - trace.started)
                for field, rule in trace.violations:
                    m.validation_failures.labels(trace.model, trace.version, field, rule).inc()
            for key, seconds in latencies.items():
                children = self._children.get(key)
                if children is None:  # label look-ups cost more than the update; keep them
                    labels = key[:5]
                    children = self._children[key] = (
                        m.requests.labels(*labels, str(key[5])),
                        m.request_seconds.labels(*labels),
                    )
                children[0].inc(len(seconds))
                observe_many(children[1], seconds)
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            writer = json_line_writer(access_logger)
            if writer is not None and not writer.redacts(_AccessRecord.__struct_fields__):
                stamp, pid = writer.stamp()
                writer.write_objects([_access_record(t, end, stamp, pid) for t, end in done])
            elif writer is not None:
                writer.write_many(
                    access_logger.name, "info", [_access_line(t, end) for t, end in done]
                )
            else:
                for trace, end in done:
                    message, extra = _access_line(trace, end)
                    access_logger.info("%s", message, extra=extra)
        if self.tracer is not None:
            now = time.time()
            for trace, end in done:
                self.tracer.record(trace, end.method, end.path, end.status, end.ended, now)


class _AccessRecord(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One access line whole, as ``_access_line`` and the log chain build it (the same keys, in
    the same order), for a line with nothing to redact: one object instead of two dicts."""

    request_id: str
    method: str
    path: str
    status: int
    latency_ms: float
    traceparent: str | UnsetType = UNSET
    model: str | UnsetType = UNSET
    version: str | UnsetType = UNSET
    variant: str | UnsetType = UNSET
    rows: int | UnsetType = UNSET
    batch_size: int | UnsetType = UNSET
    fallback: bool | UnsetType = UNSET
    message: str
    level: str
    logger: str
    time: str
    pid: int


def _access_record(trace: RequestTrace, end: Finished, stamp: str, pid: int) -> _AccessRecord:
    """``_access_line``'s record with the standard keys, as one object."""
    record = _AccessRecord(
        request_id=trace.request_id,
        method=end.method,
        path=end.path,
        status=end.status,
        latency_ms=round((end.ended - trace.started) * 1000, 3),
        message=f"{end.method} {end.path} {end.status}",
        level="info",
        logger=_ACCESS,
        time=stamp,
        pid=pid,
    )
    if trace.traceparent:
        record.traceparent = trace.traceparent
    if trace.model:  # as RequestTrace.served_fields
        record.model, record.version = trace.model, trace.version
        if trace.variant:
            record.variant = trace.variant
    if trace.batch is not None:
        record.rows, record.batch_size = trace.rows, trace.batch.batch_rows
        record.fallback = trace.fallback
    return record


def _access_line(trace: RequestTrace, end: Finished) -> tuple[str, dict[str, object]]:
    """The access record of one request: its message and fields."""
    extra: dict[str, object] = {
        "request_id": trace.request_id,
        "method": end.method,
        "path": end.path,
        "status": end.status,
        "latency_ms": round((end.ended - trace.started) * 1000, 3),
    }
    if trace.traceparent:
        extra["traceparent"] = trace.traceparent
    extra.update(trace.served_fields())
    return f"{end.method} {end.path} {end.status}", extra
