"""Tracing: spans built from a finished request's timings, continuing the caller's trace."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rtserve.events import BatchInfo, RequestTrace
from rtserve.observability.tracing import Tracer

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
def exporter():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory, provider
    provider.shutdown()


def finished_request(traceparent: str | None) -> RequestTrace:
    trace = RequestTrace("req-7", started=100.0, traceparent=traceparent)
    trace.model, trace.version, trace.rows = "fraud", "1", 2
    trace.validate_started, trace.validated = 100.001, 100.003
    trace.batch = BatchInfo(
        queue_seconds=0.002, predict_seconds=0.004, batch_rows=8, batch_requests=3
    )
    trace.predicted = 100.009
    return trace


def test_a_request_yields_validate_queue_predict_encode_under_the_callers_trace(exporter):
    memory, provider = exporter
    tracer = Tracer(provider)
    tracer.start()
    tracer.record(
        finished_request(f"00-{TRACE}-{PARENT}-01"),
        "POST",
        "/v1/models/fraud:predict",
        200,
        100.010,
        1_700_000_000.0,
    )
    tracer.close()
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"POST /v1/models/fraud:predict", "validate", "queue", "predict", "encode"}
    root = spans["POST /v1/models/fraud:predict"]
    assert format(root.context.trace_id, "032x") == TRACE
    assert format(root.parent.span_id, "016x") == PARENT
    for name in ("validate", "queue", "predict", "encode"):
        assert spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
    assert root.attributes["rtserve.model"] == "fraud"
    assert root.attributes["rtserve.batch_size"] == 8
    order = [spans[n].start_time for n in ("validate", "queue", "predict", "encode")]
    assert order == sorted(order)
    assert spans["predict"].end_time - spans["predict"].start_time == pytest.approx(
        4_000_000, abs=1_000
    )


def test_without_a_traceparent_a_new_trace_starts_and_failed_requests_have_no_model_spans(exporter):
    memory, provider = exporter
    tracer = Tracer(provider)
    tracer.start()
    trace = RequestTrace("req-8", started=5.0)
    tracer.record(trace, "GET", "/nowhere", 404, 5.001, 1_700_000_000.0)
    tracer.close()
    [span] = memory.get_finished_spans()
    assert span.parent is None
    assert span.attributes["http.response.status_code"] == 404
