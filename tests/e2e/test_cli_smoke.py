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
