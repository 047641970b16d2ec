"""The installed `rtserve` command and `python -m rtserve`, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.e2e

CONSOLE_SCRIPT = Path(sys.executable).with_name("rtserve")


def _run(*args: object, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rtserve"] if module else [str(CONSOLE_SCRIPT)]
    return subprocess.run(
        [*command, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def _linear_onnx(path: Path) -> None:
    """A two-feature linear regressor written with onnx.helper (no converter, quick to load)."""
    from onnx import TensorProto, helper, save_model

    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [0.5, -2.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[weights, bias],
    )
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_build_then_verify_with_the_real_command(tmp_path: Path) -> None:
    _linear_onnx(tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"]).to_csv(
        tmp_path / "sample.csv", index=False
    )
    bundle = tmp_path / "smoke-1.tar.gz"

    helped = _run("--help")
    built = _run(
        "build", tmp_path / "model.onnx", "--sample", tmp_path / "sample.csv",
        "--name", "smoke", "--version", "1", "--output", bundle,
        module=True,
    )  # fmt: skip
    verified = _run("verify", bundle, "--json")
    failed = _run("verify", tmp_path / "missing")

    assert helped.returncode == 0, helped.stderr
    assert "build" in helped.stdout
    assert built.returncode == 0, built.stderr
    assert "onnx / onnx" in built.stdout
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr


def test_serve_on_a_busy_port_says_so_in_one_line_before_loading_anything(
    tmp_path: Path, e2e_bundles: tuple[Path, Path]
) -> None:
    import socket
    import time

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = _run("serve", e2e_bundles[0], "--port", port)
        elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use by another process; "
        "stop that process or choose another port with --port (or RTSERVE_SERVER__PORT)"
    ]
    assert elapsed < 10  # no model was loaded (a load and warm-up take longer on this machine)


def test_demo_serves_and_keeps_its_decision_log_inside_its_directory(tmp_path: Path) -> None:
    import signal
    import time

    import httpx

    from rtserve.demo import example_record
    from rtserve.loadgen.launch import free_port

    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "demo", "--dir", str(tmp_path / "demo"), "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        answer = httpx.post(
            f"{url}/v1/models/card-fraud:predict", json={"instances": [example_record()]}
        )
        assert answer.status_code == 200, answer.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    decisions = tmp_path / "demo" / "decisions"
    assert f"decision log in {decisions}" in log.read_text()
    assert any(decisions.iterdir())
