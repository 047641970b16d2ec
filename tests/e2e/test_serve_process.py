"""A real ``rtserve serve`` process, driven by NVIDIA's tritonclient and plain HTTP."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

import rtserve
from rtserve.demo import example_record
from tests.e2e.conftest import ServerProcess, start_server

pytestmark = pytest.mark.e2e


def _client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def test_tritonclient_health_and_metadata(server: ServerProcess) -> None:
    client = _client(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("fraud")
    assert client.is_model_ready("dense", "1")
    assert client.get_server_metadata()["name"] == "rtserve"
    metadata = client.get_model_metadata("dense")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]


@pytest.mark.parametrize("rows", [1, 64])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infers_a_numeric_model(
    server: ServerProcess, e2e_bundles: tuple[Path, Path], rows: int, binary: bool
) -> None:
    client = _client(server)
    data = np.random.default_rng(rows).normal(size=(rows, 3))
    tensor = triton.InferInput("input", list(data.shape), "FP64")
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=binary),
        triton.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    result = client.infer("dense", [tensor], outputs=outputs)
    expected = rtserve.load(e2e_bundles[1]).predict(
        {"a": data[:, 0], "b": data[:, 1], "c": data[:, 2]}
    )
    np.testing.assert_array_equal(result.as_numpy("label"), expected.label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-12)


def test_tritonclient_infers_a_mixed_type_model_one_input_per_field(
    server: ServerProcess, e2e_bundles: tuple[Path, Path]
) -> None:
    client = _client(server)
    predictor = rtserve.load(e2e_bundles[0])
    record = example_record()
    inputs = []
    for spec in predictor.schema.inputs:
        value = record[spec.name]
        if spec.type.value == "string":
            array = np.array([value], dtype=object)
            datatype = "BYTES"
        elif spec.type.value == "int":
            array, datatype = np.array([value], dtype=np.int64), "INT64"
        else:
            array, datatype = np.array([value], dtype=np.float64), "FP64"
        tensor = triton.InferInput(spec.name, [1], datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("fraud", inputs, outputs=[triton.InferRequestedOutput("probabilities")])
    expected = predictor.predict([record])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-12)
    assert result.as_numpy("label") is None  # only the named output came back


def test_plain_http_records_api_and_errors(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as http:
        ok = http.post("/v1/models/fraud:predict", json={"instances": [example_record()]})
        assert ok.status_code == 200
        assert ok.json()["model"] == {"name": "fraud", "version": "1"}
        bad = http.post("/v1/models/fraud:predict", json={"instances": [{"amount": "x"}]})
        assert bad.status_code == 422
        assert "amount" in bad.json()["fields"]


def test_sigterm_stops_cleanly(e2e_bundles: tuple[Path, Path], tmp_path: Path) -> None:
    running = start_server([str(e2e_bundles[1])], tmp_path / "log")
    assert running.stop(signal.SIGTERM) == 0
    assert "Traceback" not in running.logs()


def _access_pids(running: ServerProcess) -> set[int]:
    """Worker pids that logged an answered predict request."""
    pids: set[int] = set()
    for line in running.logs().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if (
            entry.get("logger") == "rtserve.access"
            and entry.get("path") == "/v1/models/dense:predict"
        ):
            pids.add(entry["pid"])
    return pids


def test_two_workers_both_answer(e2e_bundles: tuple[Path, Path], tmp_path: Path) -> None:
    running = start_server([str(e2e_bundles[1]), "--workers", "2"], tmp_path / "log")
    try:
        # start_server saw one worker ready: a worker accepts only once loaded, so from now on
        # every request is answered by a ready worker, never with 503 by one still loading
        body = {"instances": [{"a": 0.1, "b": 0.2, "c": 0.3}]}

        def ask(i: int) -> int:
            # a fresh connection each time so the kernel spreads them over both workers
            return httpx.post(
                f"{running.url}/v1/models/dense:predict",
                json=body,
                headers={"X-Request-ID": f"w-{i}"},
            ).status_code

        sent = 0
        # until both answered: the second worker may still be loading on a busy machine
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(_access_pids(running)) < 2 and time.monotonic() < deadline:
                assert set(pool.map(ask, range(sent, sent + 40))) == {200}
                sent += 40
        assert len(_access_pids(running)) == 2, running.logs()[-2000:]
    finally:
        assert running.stop(signal.SIGTERM) == 0


def test_the_start_up_banner_says_where_the_decision_log_writes(server: ServerProcess) -> None:
    from rtserve.settings import Settings

    directory = Settings.load().decision_log.directory
    assert f"rtserve: decision log in {directory}" in server.logs()
