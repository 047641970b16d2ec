"""Metrics: every family follows the naming rules, and several worker processes add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtserve.observability.metrics import (
    MULTIPROC_ENV,
    Metrics,
    ModelSnapshot,
    mark_worker_dead,
    multiprocess_metrics,
    observe_many,
    prepare_multiprocess_dir,
)


def test_every_family_has_the_prefix_base_units_and_low_cardinality_labels():
    metrics = Metrics()
    forbidden = {"request_id", "id", "value", "instance_id", "user"}
    families = list(metrics.registry.collect())
    assert len(families) >= 25
    for family in families:
        assert family.name.startswith("rtserve_"), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_rows")), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total"), "prometheus-client adds _total itself"
        assert family.documentation, family.name
    labelled = [
        metric._labelnames for metric in vars(metrics).values() if hasattr(metric, "_labelnames")
    ]
    assert all(not forbidden.intersection(names) for names in labelled)


def test_the_exposition_is_prometheus_text_with_counters_ending_in_total():
    metrics = Metrics()
    metrics.requests.labels("fraud", "1", "records", "predict", "canary", "200").inc()
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain; version=")
    assert (
        'rtserve_requests_total{endpoint="predict",model="fraud",protocol="records",'
        'status="200",variant="canary",version="1"} 1.0' in text
    )
    assert "rtserve_process_cpu_seconds_total" in text
    assert "rtserve_process_resident_memory_bytes" in text


def test_a_version_no_longer_served_drops_to_zero():
    metrics = Metrics()
    metrics.show_models([ModelSnapshot("fraud", "1", "sha256:a", "sklearn", True)])
    metrics.show_models([ModelSnapshot("fraud", "2", "sha256:b", "onnx", False)])
    value = metrics.registry.get_sample_value
    assert value("rtserve_model_ready", {"model": "fraud", "version": "1"}) == 0
    assert value("rtserve_model_ready", {"model": "fraud", "version": "2"}) == 0
    info = {"model": "fraud", "version": "2", "digest": "sha256:b", "runtime": "onnx"}
    assert value("rtserve_model_info", info) == 1
    assert (
        value(
            "rtserve_model_info",
            {**info, "version": "1", "digest": "sha256:a", "runtime": "sklearn"},
        )
        == 0
    )


WORKER = """
import os, sys
from rtserve.observability.metrics import Metrics
m = Metrics()
m.requests.labels("fraud", "1", "records", "predict", "", "200").inc(int(sys.argv[1]))
m.refresh_process()
print(os.getpid())
"""


def _run_worker(directory: Path, count: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(count)],
        env={**os.environ, MULTIPROC_ENV: str(directory)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def test_worker_processes_add_up_and_a_dead_worker_leaves_the_live_gauges(tmp_path, monkeypatch):
    directory = prepare_multiprocess_dir(tmp_path / "mp")
    first = _run_worker(directory, 3)
    _run_worker(directory, 4)
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    reader = Metrics()
    assert reader.multiprocess

    def scrape() -> str:
        return reader.exposition()[0].decode()

    text = scrape()
    assert 'status="200",variant="",version="1"} 7.0' in text
    assert "rtserve_worker_processes 2.0" in text
    mark_worker_dead(first, directory)
    assert "rtserve_worker_processes 1.0" in scrape()
    assert (
        'status="200",variant="",version="1"} 7.0' in scrape()
    )  # counters keep what the dead worker did


def test_stale_values_of_an_earlier_run_are_removed_before_workers_start(tmp_path):
    directory = tmp_path / "mp"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    prepare_multiprocess_dir(directory)
    assert list(directory.iterdir()) == []


def test_the_runner_context_exports_a_temporary_directory_and_removes_it(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_metrics() as directory:
        assert os.environ[MULTIPROC_ENV] == str(directory)
        assert directory.is_dir()
    assert MULTIPROC_ENV not in os.environ
    assert not directory.exists()


@pytest.mark.parametrize("kept", [True])
def test_a_given_directory_is_kept_after_the_run(tmp_path, monkeypatch, kept):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_metrics(str(tmp_path / "shared")) as directory:
        pass
    assert directory.is_dir() is kept


def test_cache_hits_and_misses_are_added_as_they_grow():
    metrics = Metrics()
    state = ModelSnapshot("fraud", "1", "sha256:a", "onnx", True, cache_hits=3, cache_misses=5)
    metrics.show_models([state])
    metrics.show_models([state])  # unchanged totals add nothing
    metrics.show_models(
        [ModelSnapshot("fraud", "1", "sha256:a", "onnx", True, cache_hits=4, cache_misses=5)]
    )
    value = metrics.registry.get_sample_value
    assert value("rtserve_cache_hits_total", {"model": "fraud", "version": "1"}) == 4
    assert value("rtserve_cache_misses_total", {"model": "fraud", "version": "1"}) == 5


#: Latencies on, between and beyond the bucket bounds (0.005 is a bound: it counts in ``le=0.005``).
LATENCIES = [0.0001, 0.0005, 0.0007, 0.005, 0.005, 0.0049, 0.3, 11.0, 0.0]


def _histogram_samples(metrics: Metrics) -> list[tuple[str, list[tuple[str, str]], float]]:
    """The request-latency histogram's samples as a scrape reads them (all workers' values)."""
    return sorted(
        (s.name, sorted(s.labels.items()), s.value)
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        if family.name == "rtserve_request_duration_seconds"
        for s in family.samples
        if not s.name.endswith("_created")
    )


def test_observing_many_latencies_at_once_is_observing_each():
    one_by_one, at_once = Metrics(), Metrics()
    labels = ("fraud", "1", "records", "predict", "")
    for value in LATENCIES:
        one_by_one.request_seconds.labels(*labels).observe(value)
    observe_many(at_once.request_seconds.labels(*labels), LATENCIES)
    observe_many(at_once.request_seconds.labels(*labels), [])
    expected = _histogram_samples(one_by_one)
    assert expected
    assert _histogram_samples(at_once) == expected


OBSERVER = """
import sys
from rtserve.observability.metrics import Metrics, observe_many
values = [float(v) for v in sys.argv[2:]]
child = Metrics().request_seconds.labels("fraud", "1", "records", "predict", "")
if sys.argv[1] == "many":
    observe_many(child, values)
else:
    for value in values:
        child.observe(value)
"""


def test_observing_many_latencies_at_once_adds_up_across_worker_processes(tmp_path, monkeypatch):
    def scrape(way: str) -> list[tuple[str, list[tuple[str, str]], float]]:
        directory = prepare_multiprocess_dir(tmp_path / way)
        subprocess.run(
            [sys.executable, "-c", OBSERVER, way, *map(str, LATENCIES)],
            env={**os.environ, MULTIPROC_ENV: str(directory)},
            check=True,
        )
        monkeypatch.setenv(MULTIPROC_ENV, str(directory))
        return _histogram_samples(Metrics())

    expected = scrape("each")
    assert any(value == len(LATENCIES) for name, _, value in expected if name.endswith("_count"))
    assert scrape("many") == expected
