"""Specification: ``DataPlane.report_group`` tells the observers of requests answered by one
prediction call (the records lane's group) with ONE event listing each request's part, unless a
single request or a rollout asks for each to be reported on its own."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from rtserve.engine.dataplane import DataPlane
from rtserve.engine.manager import ServedModel
from rtserve.events import BatchInfo, RequestPart, RequestTrace
from rtserve.rollout.spec import RolloutSpec, RolloutState
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns
from tests.unit.engine.observed_plane import Recorder, observed_plane

TRACE_A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_C = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#: The group's requests in row order: (request id, rows, traceparent).
REQUESTS = (("req-a", 1, TRACE_A), ("req-b", 2, None), ("req-c", 1, TRACE_C))
ROWS = sum(rows for _, rows, _ in REQUESTS)
#: Only passed on to the observers, so plain values do: row i holds i.
COLUMNS: Columns = {"x": np.arange(ROWS, dtype=np.float64)}
LABELS = np.arange(ROWS) % 2
PROBABILITIES = np.linspace(0.0, 1.0, 2 * ROWS).reshape(ROWS, 2)
OUTPUT = ModelOutput(label=LABELS, probabilities=PROBABILITIES)


@pytest.fixture
def plane(fraud_bundle_dir: Path) -> tuple[DataPlane, Recorder]:
    return observed_plane(fraud_bundle_dir)


def answered(
    requests: tuple[tuple[str, int, str | None], ...] = REQUESTS, *, variant: str = ""
) -> list[tuple[RequestTrace, float]]:
    """Traces of requests answered together, as the lane leaves them: their own rows, the
    group's batch, answer time and fallback; each decoded 10 ms after the one before."""
    now = time.perf_counter()
    predicted = now - 0.001
    batch = BatchInfo(queue_seconds=0.003, predict_seconds=0.002, batch_rows=ROWS,
                      batch_requests=len(requests))  # fmt: skip
    traces = []
    for i, (request_id, rows, traceparent) in enumerate(requests):
        began = now - 0.05 + 0.01 * i
        trace = RequestTrace(request_id, began - 0.0005, traceparent, "records", "fraud", "1",
                             variant, rows=rows, batch=batch, predicted=predicted)  # fmt: skip
        traces.append((trace, began))
    return traces


def fraud(dataplane: DataPlane) -> ServedModel:
    return dataplane.manager.get("fraud")


def test_requests_answered_together_are_one_event_with_a_part_each_in_row_order(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    served, group = fraud(dataplane), answered()
    dataplane.report_group(served, COLUMNS, OUTPUT, group)

    [event] = recorder.events
    assert [(p.request_id, p.rows, p.traceparent) for p in event.parts] == list(REQUESTS)
    assert [p.latency_seconds for p in event.parts] == [t.predicted - began for t, began in group]
    assert event.requests() == event.parts
    assert event.rows == ROWS
    assert event.columns is COLUMNS
    assert event.output is OUTPUT
    assert (event.model, event.version, event.digest) == ("fraud", "1", served.digest)
    assert (event.protocol, event.variant, event.fallback) == ("records", "", False)
    assert event.batch is group[0][0].batch
    first = event.parts[0]  # the event's own fields are the first request's
    assert (event.request_id, event.traceparent) == ("req-a", TRACE_A)
    assert (event.latency_seconds, event.time) == (first.latency_seconds, first.time)


def test_each_part_is_stamped_with_the_wall_clock_time_its_decoding_began(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    group = answered()
    dataplane.report_group(fraud(dataplane), COLUMNS, OUTPUT, group)
    wall, now = time.time(), time.perf_counter()

    [event] = recorder.events
    for part, (_, began) in zip(event.parts, group, strict=True):
        assert part.time == pytest.approx(wall - (now - began), abs=0.05)
        assert part.time - event.parts[0].time == pytest.approx(began - group[0][1], abs=1e-6)


def test_one_request_alone_is_reported_as_a_plain_event_without_parts(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    [(trace, began)] = answered(REQUESTS[1:2])
    own = {"x": COLUMNS["x"][:2]}
    dataplane.report_group(fraud(dataplane), own, OUTPUT.rows(0, 2), [(trace, began)])

    [event] = recorder.events
    assert event.parts == ()
    assert event.requests() == (RequestPart("req-b", 2, trace.predicted - began, None, event.time),)
    assert event.rows == 2
    assert event.columns is own


def test_under_a_rollout_each_request_is_its_own_event_with_its_own_rows(
    plane: tuple[DataPlane, Recorder],
) -> None:
    dataplane, recorder = plane
    live = dataplane.rollouts.apply(RolloutSpec(model="fraud", production="1"), RolloutState())
    group = answered(variant="production")
    dataplane.report_group(fraud(dataplane), COLUMNS, OUTPUT, group)

    events = recorder.events
    assert [(e.request_id, e.rows, e.traceparent) for e in events] == list(REQUESTS)
    assert all(e.parts == () and e.variant == "production" for e in events)
    assert [e.latency_seconds for e in events] == [t.predicted - began for t, began in group]
    assert [e.columns["x"].tolist() for e in events] == [[0.0], [1.0, 2.0], [3.0]]
    for event, (start, stop) in zip(events, [(0, 1), (1, 3), (3, 4)], strict=True):
        np.testing.assert_array_equal(event.output.label, LABELS[start:stop])
        np.testing.assert_array_equal(event.output.probabilities, PROBABILITIES[start:stop])
    assert live.arm("production").total == 3  # the variant's window counts requests


def test_a_group_not_answered_reaches_no_observer(plane: tuple[DataPlane, Recorder]) -> None:
    dataplane, recorder = plane
    group = answered()
    for trace, _ in group:
        trace.batch = None
    dataplane.report_group(fraud(dataplane), COLUMNS, OUTPUT, group)
    assert recorder.events == []


def test_a_group_where_only_a_later_request_carries_a_variant_is_reported_request_by_request(
    plane: tuple[DataPlane, Recorder],
) -> None:
    """A rollout applied while the group was being admitted: the requests routed after it carry
    its variant, and each of them must still be counted in its variant's window."""
    dataplane, recorder = plane
    live = dataplane.rollouts.apply(RolloutSpec(model="fraud", production="1"), RolloutState())
    group = answered()
    for trace, _ in group[1:]:
        trace.variant = "production"
    dataplane.report_group(fraud(dataplane), COLUMNS, OUTPUT, group)

    assert [(e.request_id, e.variant, e.parts) for e in recorder.events] == [
        ("req-a", "", ()),
        ("req-b", "production", ()),
        ("req-c", "production", ()),
    ]
    assert live.arm("production").total == 2
