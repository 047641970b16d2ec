"""Optional OpenTelemetry spans (the ``tracing`` extra): validate, queue, predict, encode.

Spans are built after the request ends, on a background thread, from the timings the request
recorded, so tracing adds no work to the hot path beyond one queue hand-off. An incoming W3C
``traceparent`` becomes the parent of the request span, so rtserve's spans join the caller's trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rtserve.errors import RtserveError
from rtserve.events import RequestTrace
from rtserve.observability.metrics import Metrics
from rtserve.observability.queueing import BackgroundQueue

logger = logging.getLogger("rtserve.tracing")
INSTRUMENTATION = "rtserve"


class TracingUnavailableError(RtserveError):
    """Tracing was switched on but OpenTelemetry is not installed."""

    code = "tracing_unavailable"


@dataclass(frozen=True)
class _Facts:
    trace: RequestTrace
    method: str
    path: str
    status: int
    ended: float  # perf_counter
    wall: float  # time.time() at ``ended``


def configure_default_provider(service_name: str = "rtserve") -> None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, unless the process has one.

    The exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers). An
    application that configured OpenTelemetry itself keeps its own provider.
    """
    trace = _otel()
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class Tracer:
    """Turns finished requests into spans: ``<METHOD> <path>`` with validate/queue/predict/encode.

    Args:
        provider: an OpenTelemetry ``TracerProvider``; the global one by default.
        metrics: counts dropped span batches; optional.
        maxsize: finished requests waiting for their spans at most (more are dropped).
    """

    def __init__(
        self, provider: Any = None, *, metrics: Metrics | None = None, maxsize: int = 10_000
    ) -> None:
        trace = _otel()
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        source = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = source.get_tracer(INSTRUMENTATION)
        self._propagator = TraceContextTextMapPropagator()
        self._queue: BackgroundQueue[_Facts] = BackgroundQueue(
            "tracing", self._emit, metrics=metrics, maxsize=maxsize
        )

    def record(
        self,
        trace: RequestTrace,
        method: str,
        path: str,
        status: int,
        ended: float,
        wall: float,
    ) -> None:
        """Queue one finished request for span building (never blocks)."""
        self._queue.put(_Facts(trace, method, path, status, ended, wall))

    def start(self) -> None:
        """Start the span-building thread."""
        self._queue.start()

    def close(self) -> None:
        """Build the spans still queued and stop."""
        self._queue.close()

    def flush(self) -> None:
        """Wait until queued requests have their spans (tests)."""
        self._queue.flush()

    def _emit(self, batch: list[_Facts]) -> None:
        for facts in batch:
            self._spans(facts)

    def _spans(self, f: _Facts) -> None:
        trace, c = self._trace, f.trace

        def ns(perf: float) -> int:
            return int((f.wall - (f.ended - perf)) * 1e9)

        parent = None
        if c.traceparent and c.trace_id:
            parent = self._propagator.extract({"traceparent": c.traceparent})
        attributes: dict[str, str | int | bool] = {
            "http.request.method": f.method,
            "url.path": f.path,
            "http.response.status_code": f.status,
            "rtserve.request_id": c.request_id,
        }
        attributes.update(c.served_fields("rtserve."))
        root = self._tracer.start_span(
            f"{f.method} {f.path}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            start_time=ns(c.started),
            attributes=attributes,
        )
        if f.status >= 500:
            root.set_status(trace.Status(trace.StatusCode.ERROR))
        inner = trace.set_span_in_context(root)
        steps: list[tuple[str, float, float]] = []
        if c.validated:
            steps.append(("validate", c.validate_started, c.validated))
        if c.predicted and c.batch is not None:
            batch_start = c.validated + c.batch.queue_seconds
            steps += [
                ("queue", c.validated, batch_start),
                ("predict", batch_start, batch_start + c.batch.predict_seconds),
                ("encode", c.predicted, f.ended),
            ]
        for name, begin, end in steps:
            span = self._tracer.start_span(name, context=inner, start_time=ns(begin))
            span.end(end_time=ns(max(end, begin)))
        root.end(end_time=ns(f.ended))


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise TracingUnavailableError(
            "tracing is on but OpenTelemetry is not installed; install the extra "
            "(pip install 'rtserve[tracing]') or set RTSERVE_LOGGING__TRACING=false",
            field="logging.tracing",
        ) from exc
    return trace
