"""Outcome accounting: HDR percentiles of 2xx answers, errors by kind, merging processes."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram

from rtserve.loadgen.stats import Latency, Recorder, merge


def _recorder(latencies_ms, errors=()):
    recorder = Recorder()
    for ms in latencies_ms:
        recorder.sent += 1
        recorder.success(ms / 1000)
    for kind in errors:
        recorder.sent += 1
        recorder.failure(kind)
    return recorder


def test_percentiles_are_those_of_the_recorded_latencies_to_three_digits():
    recorder = _recorder([float(ms) for ms in range(1, 1001)])  # 1 .. 1000 ms
    result = merge([(recorder, 2.0)], mode="closed", concurrency=1, rate=None)
    latency = result.latency_ms
    assert latency.p50 == pytest.approx(500, rel=1e-3)
    assert latency.p90 == pytest.approx(900, rel=1e-3)
    assert latency.p99 == pytest.approx(990, rel=1e-3)
    assert latency.p999 == pytest.approx(999, rel=1e-3)
    assert latency.max == pytest.approx(1000, rel=1e-3)
    assert latency.min == pytest.approx(1, rel=1e-3)
    assert latency.mean == pytest.approx(500.5, rel=1e-3)


def test_errors_are_counted_by_kind_and_kept_out_of_the_latencies():
    recorder = _recorder([2.0] * 8, errors=["503", "503", "timeout"])
    result = merge([(recorder, 1.0)], mode="closed", concurrency=4, rate=None)
    assert result.ok == 8
    assert result.sent == 11
    assert result.errors == {"503": 2, "timeout": 1}
    assert result.error_count == 3
    assert result.throughput == 8.0  # 2xx answers per second
    assert HdrHistogram.decode(result.histogram.encode()).get_total_count() == 8


def test_results_of_several_processes_add_up_and_take_the_longest_elapsed_time():
    fast = _recorder([1.0] * 90, errors=["500"])
    slow = _recorder([100.0] * 10)
    slow.late = 3
    result = merge([(fast, 2.0), (slow, 2.5)], mode="open", concurrency=8, rate=50.0)
    assert (result.ok, result.sent, result.late, result.processes) == (100, 101, 3, 2)
    assert result.errors == {"500": 1}
    assert result.elapsed_s == 2.5
    assert result.latency_ms.p50 == pytest.approx(1.0, rel=1e-3)
    assert result.latency_ms.p99 == pytest.approx(100.0, rel=1e-3)


def test_a_recorder_survives_its_snapshot_unchanged():
    recorder = _recorder([3.0, 4.0], errors=["closed"])
    recorder.late = 1
    copy = Recorder.from_snapshot(recorder.snapshot())
    assert (copy.ok, copy.sent, copy.late, dict(copy.errors)) == (2, 3, 1, {"closed": 1})
    assert Latency.of(copy.histogram) == Latency.of(recorder.histogram)


def test_latencies_below_a_microsecond_are_recorded_as_one():
    recorder = _recorder([0.0])
    assert recorder.histogram.get_min_value() == 1


def test_an_empty_result_reports_zeros_not_an_error():
    result = merge([(Recorder(), 0.0)], mode="closed", concurrency=1, rate=None)
    assert result.throughput == 0.0
    assert result.latency_ms == Latency(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_the_json_document_names_the_percentiles_as_people_write_them():
    document = merge(
        [(_recorder([1.0, 2.0]), 1.0)], mode="closed", concurrency=1, rate=None
    ).to_dict()
    assert set(document["latency_ms"]) == {
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "mean",
        "min",
        "stdev",
    }
    assert document["throughput"] == 2.0
    assert document["error_count"] == 0
