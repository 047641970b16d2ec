"""Specification: an event that answers several requests together (the records lane's group,
``PredictionEvent.parts``) is recorded by the decision log and the metrics exactly as its
requests would be, each reported alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest

from rtserve.bundle.schema import FieldSpec, FieldType, OutputSpec, Schema
from rtserve.events import BatchInfo, PredictionEvent, RequestPart
from rtserve.observability.decisions import DecisionLogObserver, JsonlSink
from rtserve.observability.decisions.record import Decision, decisions_for
from rtserve.observability.metrics import Metrics
from rtserve.observability.model_metrics import MetricsObserver
from rtserve.observability.redaction import Redactor
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns, Task

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
TRACE_A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_C = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SCHEMA = Schema(
    inputs=[
        FieldSpec(name="amount", type=FieldType.FLOAT),
        FieldSpec(name="home_country", type=FieldType.STRING, pii=True),
    ],
    outputs=OutputSpec(task=Task.CLASSIFICATION, classes=["no", "yes"]),
)
#: The group's requests in row order: (request id, rows, latency, traceparent, accepted at).
PARTS = (
    RequestPart("req-a", 1, 0.011, TRACE_A, T0 + 0.1),
    RequestPart("req-b", 2, 0.022, None, T0 + 0.2),
    RequestPart("req-c", 1, 0.033, TRACE_C, T0 + 0.3),
)
ROWS = sum(part.rows for part in PARTS)
BATCH = BatchInfo(queue_seconds=0.003, predict_seconds=0.002, batch_rows=ROWS, batch_requests=3)
COLUMNS: Columns = {
    "amount": np.array([12.5, 0.25, float("nan"), 99.0]),
    "home_country": np.array(["FR", "DE", None, "FR"], dtype=object),
}
OUTPUT = ModelOutput(
    label=np.array(["yes", "no", "no", "yes"], dtype=object),
    probabilities=np.array([[0.25, 0.75], [0.9, 0.1], [0.6, 0.4], [0.125, 0.875]]),
)
SERVER_ID = re.compile(rb'"server_id":"[0-9a-f]{32}"')


def group_event(*, fallback: bool = False) -> PredictionEvent:
    """The three requests answered by one prediction call, as ``DataPlane.report_group`` builds
    them: the first request's own fields, everyone's rows, a part per request."""
    first = PARTS[0]
    return PredictionEvent(
        first.request_id, first.time, "fraud", "1", "sha256:f", "records", COLUMNS, OUTPUT,
        ROWS, first.latency_seconds, BATCH, fallback=fallback, traceparent=first.traceparent,
        parts=PARTS,
    )  # fmt: skip


def lone_events(*, fallback: bool = False) -> list[PredictionEvent]:
    """The same three requests, each reported on its own with its slice of rows."""
    events, start = [], 0
    for part in PARTS:
        stop = start + part.rows
        own = {name: values[start:stop] for name, values in COLUMNS.items()}
        event = PredictionEvent(
            part.request_id, part.time, "fraud", "1", "sha256:f", "records", own,
            OUTPUT.rows(start, stop), part.rows, part.latency_seconds, BATCH,
            fallback=fallback, traceparent=part.traceparent,
        )  # fmt: skip
        events.append(event)
        start = stop
    return events


def without_server_ids(decisions: list[Decision]) -> list[bytes]:
    """Each record as the log writes it, its server id blanked (a NaN input compares equal)."""
    return [msgspec.json.encode(msgspec.structs.replace(d, server_id="")) for d in decisions]


def test_a_lone_event_is_one_request_of_its_own_fields() -> None:
    [lone] = lone_events()[1:2]
    assert lone.requests() == (RequestPart("req-b", 2, 0.022, None, T0 + 0.2),)
    assert group_event().requests() == PARTS


# --- the decision log -----------------------------------------------------------------------


@pytest.mark.parametrize("include_inputs", [False, True], ids=["hash-only", "with-inputs"])
def test_a_group_event_gives_the_records_of_its_requests_reported_alone(
    include_inputs: bool,
) -> None:
    def records(events: list[PredictionEvent]) -> list[Decision]:
        return decisions_for(events, SCHEMA, Redactor(b"k"), include_inputs=include_inputs)

    grouped = records([group_event()])
    assert without_server_ids(grouped) == without_server_ids(records(lone_events()))
    assert [(d.request_id, d.row) for d in grouped] == [
        ("req-a", 0),
        ("req-b", 0),
        ("req-b", 1),
        ("req-c", 0),
    ]
    assert [d.latency_seconds for d in grouped] == [0.011, 0.022, 0.022, 0.033]
    assert [d.trace_id for d in grouped] == [
        "0af7651916cd43dd8448eb211c80319c",
        None,
        None,
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ]
    seconds = [0.1, 0.2, 0.2, 0.3]
    assert [d.time for d in grouped] == [datetime.fromtimestamp(T0 + s, UTC) for s in seconds]
    assert [d.output["label"] for d in grouped] == ["yes", "no", "no", "yes"]


def test_each_request_of_a_group_has_its_own_server_id_shared_by_its_rows() -> None:
    a, b0, b1, c = decisions_for([group_event()], SCHEMA, Redactor(b"k"), include_inputs=False)
    assert b0.server_id == b1.server_id
    assert len({a.server_id, b0.server_id, c.server_id}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", d.server_id) for d in (a, b0, c))


def test_group_and_lone_events_mixed_in_one_batch_are_recorded_in_event_order() -> None:
    lone = lone_events()
    mixed = [lone[2], group_event(), lone[0]]
    expected = [lone[2], *lone, lone[0]]
    redactor = Redactor(b"k")
    assert without_server_ids(
        decisions_for(mixed, SCHEMA, redactor, include_inputs=True)
    ) == without_server_ids(decisions_for(expected, SCHEMA, redactor, include_inputs=True))


def jsonl_lines(directory: Path, events: list[PredictionEvent]) -> list[bytes]:
    """The JSON lines the decision-log observer writes for ``events``."""
    observer = DecisionLogObserver(
        JsonlSink(directory), lambda model, version: SCHEMA, Redactor(b"k"), include_inputs=True
    )
    observer.start()
    for event in events:
        observer.observe(event)
    observer.close()
    [segment] = directory.glob("decisions-*.jsonl")
    return segment.read_bytes().splitlines()


def test_the_jsonl_lines_of_a_group_equal_those_of_its_requests_but_for_server_ids(
    tmp_path: Path,
) -> None:
    grouped = jsonl_lines(tmp_path / "group", [group_event()])
    alone = jsonl_lines(tmp_path / "alone", lone_events())
    assert len(grouped) == ROWS

    def blanked(lines: list[bytes]) -> list[bytes]:
        return [SERVER_ID.sub(b'"server_id":""', line) for line in lines]

    assert blanked(grouped) == blanked(alone)
    ids = [SERVER_ID.search(line) for line in grouped]
    assert all(ids)
    a, b0, b1, c = (match.group() for match in ids if match is not None)
    assert b0 == b1
    assert len({a, b0, c}) == 3


# --- the metrics ----------------------------------------------------------------------------

FAMILIES = (
    "rtserve_model_latency_seconds",
    "rtserve_queue_wait_seconds",
    "rtserve_batch_size_rows",
    "rtserve_predictions",
    "rtserve_fallbacks",
)
LABELS = {"model": "fraud", "version": "1"}


def recorded(events: list[PredictionEvent]) -> Metrics:
    """A private registry after the metrics observer recorded ``events``."""
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    observer.start()
    for event in events:
        observer.observe(event)
    observer.close()
    return metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the model-level families (buckets, counts, sums, totals)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.registry.collect()
        if family.name in FAMILIES
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@pytest.mark.parametrize("fallback", [False, True], ids=["model", "fallback"])
def test_a_group_of_three_counts_as_three_requests_in_every_model_metric(fallback: bool) -> None:
    metrics = recorded([group_event(fallback=fallback)])
    value = metrics.registry.get_sample_value
    for histogram in FAMILIES[:3]:
        assert value(f"{histogram}_count", LABELS) == 3, histogram
    assert value("rtserve_model_latency_seconds_sum", LABELS) == pytest.approx(3 * 0.002)
    assert value("rtserve_queue_wait_seconds_sum", LABELS) == pytest.approx(3 * 0.003)
    assert value("rtserve_batch_size_rows_sum", LABELS) == 3 * ROWS
    assert value("rtserve_predictions_total", LABELS) == ROWS
    assert (value("rtserve_fallbacks_total", LABELS) or 0) == (3 if fallback else 0)
    assert samples(metrics) == samples(recorded(lone_events(fallback=fallback)))
