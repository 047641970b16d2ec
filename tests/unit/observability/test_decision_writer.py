"""The decision log's writer process: the records the thread would write, from a child process
that never outlives the server and is replaced when it dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtserve.events import BatchInfo, PredictionEvent, RequestPart
from rtserve.observability.decisions import DecisionLogObserver, JsonlSink
from rtserve.observability.metrics import Metrics
from rtserve.observability.redaction import Redactor
from rtserve.runtimes.base import ModelOutput
from rtserve.settings import Settings
from rtserve.types import MatrixColumns

T0 = 1_714_564_800.0
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def fraud_events(predictor, training) -> list[PredictionEvent]:
    """Mixed-type events (strings, floats, missing values, a PII field): one request of three
    rows, and a records-lane group of two requests (one row, then two)."""
    single = training.iloc[:3]
    columns = predictor.validate(single)
    one = PredictionEvent(
        "req-1", T0, "fraud", "1", predictor.digest, "records", columns, predictor.run(columns),
        3, 0.004, BatchInfo(0.001, 0.002, 3, 1), traceparent=TRACEPARENT,
    )  # fmt: skip
    group = training.iloc[3:6]
    columns = predictor.validate(group)
    parts = (RequestPart("req-2", 1, 0.003, None, T0 + 1), RequestPart("req-3", 2, 0.005, None, T0))
    two = PredictionEvent(
        "req-2", T0 + 1, "fraud", "1", predictor.digest, "records", columns,
        predictor.run(columns), 3, 0.003, BatchInfo(0.001, 0.002, 3, 2), parts=parts,
    )  # fmt: skip
    return [one, two]


def dense_event() -> PredictionEvent:
    """A numeric model's event without a schema: int, float and bool columns, a value output."""
    rng = np.random.default_rng(0)
    columns = {
        "f": rng.normal(size=4),
        "n": np.arange(4, dtype=np.int64),
        "b": np.array([True, False, True, True]),
    }
    output = ModelOutput(value=rng.normal(size=4).astype(np.float32))
    return PredictionEvent(
        "req-d", T0, "dense", "7", "sha256:" + "c" * 64, "v2", columns, output, 4, 0.001,
        BatchInfo(0.0, 0.001, 4, 1), fallback=True, variant="canary",
    )  # fmt: skip


def float_event() -> PredictionEvent:
    """A dense model's event: every column float64 (they travel as one block of bytes)."""
    rng = np.random.default_rng(1)
    columns = {f"x{i}": rng.normal(size=5) for i in range(8)}
    output = ModelOutput(
        label=np.array([0, 1, 1, 0, 1]), probabilities=rng.random(size=(5, 2)).astype(np.float32)
    )
    parts = tuple(RequestPart(f"req-f{i}", 1, 0.001 * i, None, T0 + i) for i in range(5))
    return PredictionEvent(
        "req-f0", T0, "dense", "8", "sha256:" + "c" * 64, "records", columns, output, 5, 0.001,
        BatchInfo(0.0, 0.001, 5, 5), parts=parts,
    )  # fmt: skip


def matrix_event() -> PredictionEvent:
    """A dense model's event as the validator makes it: the columns of one float matrix."""
    rng = np.random.default_rng(2)
    columns = MatrixColumns([f"x{i}" for i in range(6)], rng.normal(size=(3, 6)))
    output = ModelOutput(label=np.array([1, 0, 1]), probabilities=rng.random(size=(3, 2)))
    return PredictionEvent(
        "req-m", T0, "dense", "9", "sha256:" + "c" * 64, "records", columns, output, 3, 0.001,
        BatchInfo(0.0, 0.001, 3, 1),
    )  # fmt: skip


def written(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(directory.glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def observer_for(directory: Path, predictor, *, process: bool, include_inputs: bool, metrics=None):
    schemas = {("fraud", "1"): predictor.schema}
    return DecisionLogObserver(
        JsonlSink(directory),
        lambda name, version: schemas.get((name, version)),
        Redactor(b"key"),
        include_inputs=include_inputs,
        metrics=metrics,
        process=process,
    )


@pytest.mark.parametrize("include_inputs", [False, True])
def test_the_writer_process_writes_the_records_the_thread_would(
    predictor, training, tmp_path, include_inputs
):
    events = [*fraud_events(predictor, training), dense_event(), float_event(), matrix_event()]
    lines = {}
    for process in (False, True):
        directory = tmp_path / f"process-{process}"
        observer = observer_for(
            directory, predictor, process=process, include_inputs=include_inputs
        )
        observer.start()
        for event in events:
            observer.observe(event)
        observer.close()
        lines[process] = written(directory)
    assert len(lines[True]) == 3 + 3 + 4 + 5 + 3
    for line in lines[False] + lines[True]:
        line.pop("server_id")  # each process makes its own (a random prefix per process)
    assert lines[True] == lines[False]
    assert (lines[True][0]["inputs"] is not None) is include_inputs


def test_the_writer_is_a_child_process_that_stops_with_the_observer(predictor, training, tmp_path):
    metrics = Metrics()
    observer = observer_for(
        tmp_path, predictor, process=True, include_inputs=False, metrics=metrics
    )
    observer.start()
    assert observer.writer is not None
    pid = observer.writer.pid
    assert pid is not None
    assert pid != os.getpid()
    observer.observe(fraud_events(predictor, training)[0])
    observer.flush()
    assert (
        metrics.registry.get_sample_value("rtserve_decisions_written_total", {"sink": "jsonl"}) == 3
    )
    observer.close()
    assert observer.writer.pid is None
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)


def test_a_writer_that_died_is_replaced_before_the_next_batch(
    predictor, training, tmp_path, caplog
):
    observer = observer_for(tmp_path, predictor, process=True, include_inputs=False)
    observer.start()
    assert observer.writer is not None
    first = observer.writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    observer.observe(fraud_events(predictor, training)[0])
    observer.flush()
    assert observer.writer.pid not in (None, first)
    observer.close()
    assert len(written(tmp_path)) == 3
    assert "writer process exited" in caplog.text


def test_a_batch_the_child_cannot_write_is_counted_and_the_next_one_is_written(
    predictor, training, tmp_path
):
    metrics = Metrics()
    target = tmp_path / "decisions"
    observer = observer_for(target, predictor, process=True, include_inputs=False, metrics=metrics)
    observer.start()  # the directory exists now; the child opens it with its first batch
    target.rmdir()
    target.write_text("a file where the directory should be")
    one, two = fraud_events(predictor, training)
    observer.observe(one)
    observer.flush()
    errors = metrics.registry.get_sample_value(
        "rtserve_observer_errors_total", {"observer": "decisions"}
    )
    assert errors == 1
    target.unlink()
    observer.observe(two)
    observer.close()
    assert [line["request_id"] for line in written(target)] == ["req-2", "req-3", "req-3"]


def test_the_writer_exits_when_the_server_dies_without_closing_it(tmp_path):
    """A server killed outright (no shutdown) leaves no writer behind: its pipe closes."""
    script = (
        "import os, sys\n"
        "from rtserve.observability.decisions import JsonlSink\n"
        "from rtserve.observability.decisions.writer import WriterProcess\n"
        "from rtserve.observability.redaction import Redactor\n"
        f"writer = WriterProcess(JsonlSink({str(tmp_path)!r}), Redactor(b'k'), include_inputs=False)\n"
        "writer.start()\n"
        "print(writer.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    child = int(done.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the writer {child} still runs 20 s after its server died")


def test_the_server_writes_decisions_from_a_process_unless_told_to_use_a_thread():
    assert Settings().decision_log.writer == "process"
    assert Settings(decision_log={"writer": "thread"}).decision_log.writer == "thread"
