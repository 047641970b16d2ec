"""The end of every HTTP request: request metrics, the access-log record and trace spans.

Failed requests never reach a prediction observer, so status codes, protocol and whole-request
latency are recorded here, from the facts the transport and the data plane wrote into the
request's ``RequestTrace``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from rtserve.events import RequestTrace
from rtserve.observability.logging import json_line_writer
from rtserve.observability.metrics import Metrics
from rtserve.observability.tracing import Tracer

access_logger = logging.getLogger("rtserve.access")


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

    def started(self) -> None:
        """A request came in."""
        if self.metrics is not None:
            self.metrics.in_flight.inc()

    def finished(self, trace: RequestTrace, end: Finished) -> None:
        """A request ended (successfully or not); never raises into the request."""
        seconds = end.ended - trace.started
        m = self.metrics
        if m is not None:
            m.in_flight.dec()
            labels = (trace.model, trace.version, end.protocol, end.endpoint, trace.variant)
            key = (*labels, end.status)
            children = self._children.get(key)
            if children is None:  # label look-ups cost more than the update; keep the children
                children = self._children[key] = (
                    m.requests.labels(*labels, str(end.status)),
                    m.request_seconds.labels(*labels),
                )
            children[0].inc()
            children[1].observe(seconds)
            for field, rule in trace.violations:
                m.validation_failures.labels(trace.model, trace.version, field, rule).inc()
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            extra: dict[str, object] = {
                "request_id": trace.request_id,
                "method": end.method,
                "path": end.path,
                "status": end.status,
                "latency_ms": round(seconds * 1000, 3),
            }
            if trace.traceparent:
                extra["traceparent"] = trace.traceparent
            extra.update(trace.served_fields())
            message = f"{end.method} {end.path} {end.status}"
            writer = json_line_writer(access_logger)
            if writer is not None:
                writer.write(access_logger.name, "info", message, extra)
            else:
                access_logger.info("%s", message, extra=extra)
        if self.tracer is not None:
            self.tracer.record(trace, end.method, end.path, end.status, end.ended, time.time())
