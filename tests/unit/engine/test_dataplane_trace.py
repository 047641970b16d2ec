"""Specification: the request's trace is passed explicitly through the data plane, which writes
each step's facts into it (route, decode, answer) and builds the observers' event from it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from rtserve.engine.dataplane import OFFLOAD_BYTES, DataPlane
from rtserve.errors import ValidationError
from rtserve.events import RequestTrace
from tests.unit.engine.observed_plane import Recorder, observed_plane

ROW = {"amount": 12.5, "hour": 3, "prior_transactions": 4, "country": "DE", "card_present": True}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def plane(fraud_bundle_dir: Path) -> tuple[DataPlane, Recorder]:
    return observed_plane(fraud_bundle_dir)


def _body(*rows: dict[str, Any]) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def test_each_step_writes_its_facts_into_the_trace_and_the_event_is_built_from_it(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    trace = RequestTrace("req-1", time.perf_counter(), TRACEPARENT)
    reply = asyncio.run(dataplane.predict_records("fraud", None, _body(ROW, ROW), trace))

    assert len(json.loads(reply.body)["predictions"]) == 2
    assert (trace.model, trace.version, trace.protocol) == ("fraud", "1", "records")
    assert trace.rows == 2
    assert trace.batch is not None
    assert not trace.fallback
    assert trace.started <= trace.validate_started <= trace.validated <= trace.predicted
    [event] = recorder.events
    assert (event.request_id, event.traceparent, event.protocol) == (
        "req-1",
        TRACEPARENT,
        "records",
    )
    assert (event.model, event.version, event.rows) == ("fraud", "1", 2)
    assert event.batch is trace.batch
    assert 0 < event.latency_seconds <= trace.predicted - trace.started


def test_the_v2_protocol_is_noted_in_the_trace(plane: tuple[DataPlane, Recorder]) -> None:
    dataplane, recorder = plane
    inputs = [
        {"name": name, "shape": [1], "datatype": datatype, "data": [value]}
        for (name, value), datatype in zip(
            ROW.items(), ["FP64", "INT64", "INT64", "BYTES", "BOOL"], strict=True
        )
    ]
    body = json.dumps({"inputs": inputs}).encode()
    trace = RequestTrace("req-2", time.perf_counter())
    asyncio.run(dataplane.infer_v2("fraud", None, body, None, trace))
    assert trace.protocol == "v2"
    assert trace.rows == 1
    assert recorder.events[0].protocol == "v2"


def test_a_refused_request_leaves_its_violations_in_the_trace_and_reaches_no_observer(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    trace = RequestTrace("req-3", time.perf_counter())
    bad = {**ROW, "amount": "high", "made-up-key-123": 1}
    with pytest.raises(ValidationError):
        asyncio.run(dataplane.predict_records("fraud", None, _body(bad), trace))
    assert ("_unknown", "unknown_field") in trace.violations  # a bounded metric label
    assert {field for field, _ in trace.violations} <= {"amount", "_unknown"}
    assert trace.validated >= trace.validate_started > 0
    assert trace.batch is None
    assert trace.predicted == 0.0
    assert recorder.events == []


def test_a_large_body_decoded_in_a_thread_calls_the_transports_hook(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, _ = plane
    waits: list[str] = []
    trace = RequestTrace("req-4", time.perf_counter(), on_wait=lambda: waits.append("waiting"))
    body = _body(*[ROW] * (OFFLOAD_BYTES // len(json.dumps(ROW)) + 1))
    assert len(body) > OFFLOAD_BYTES
    asyncio.run(dataplane.predict_records("fraud", None, body, trace))
    assert waits[:1] == ["waiting"]


def test_small_requests_answered_at_once_never_call_the_hook(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, _ = plane
    waits: list[str] = []
    trace = RequestTrace("req-5", time.perf_counter(), on_wait=lambda: waits.append("waiting"))
    asyncio.run(dataplane.predict_records("fraud", None, _body(ROW), trace))
    assert waits == []
