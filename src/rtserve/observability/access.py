"""The end of every HTTP request: request metrics, the access-log record and trace spans.

Failed requests never reach a prediction observer, so status codes, protocol and whole-request
latency are recorded here, from the facts the middleware and the data plane left in the request's
``RequestContext``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from rtserve.observability.context import RequestContext
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
        self._children: dict[tuple[str, str, str, str, int], tuple[Counter, Histogram]] = {}

    def started(self) -> None:
        """A request came in."""
        if self.metrics is not None:
            self.metrics.in_flight.inc()

    def finished(self, context: RequestContext, end: Finished) -> None:
        """A request ended (successfully or not); never raises into the request."""
        seconds = end.ended - context.started
        m = self.metrics
        if m is not None:
            m.in_flight.dec()
            labels = (context.model, context.version, end.protocol, end.endpoint)
            key = (*labels, end.status)
            children = self._children.get(key)
            if children is None:  # label look-ups cost more than the update; keep the children
                children = self._children[key] = (
                    m.requests.labels(*labels, str(end.status)),
                    m.request_seconds.labels(*labels),
                )
            children[0].inc()
            children[1].observe(seconds)
            for field, rule in context.violations:
                m.validation_failures.labels(context.model, context.version, field, rule).inc()
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            extra: dict[str, object] = {
                "request_id": context.request_id,
                "method": end.method,
                "path": end.path,
                "status": end.status,
                "latency_ms": round(seconds * 1000, 3),
            }
            if context.traceparent:
                extra["traceparent"] = context.traceparent
            extra.update(context.served_fields())
            message = f"{end.method} {end.path} {end.status}"
            writer = json_line_writer(access_logger)
            if writer is not None:
                writer.write(access_logger.name, "info", message, extra)
            else:
                access_logger.info("%s", message, extra=extra)
        if self.tracer is not None:
            self.tracer.record(context, end.method, end.path, end.status, end.ended, time.time())
