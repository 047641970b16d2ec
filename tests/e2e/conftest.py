"""Fixtures that run a real ``rtserve serve`` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.loadgen.launch import free_port, rtserve_command


@dataclass
class ServerProcess:
    """A running server: its process, base URL and captured log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_server(args: list[str], log: Path, timeout: float = 90.0) -> ServerProcess:
    """Start ``rtserve serve ARGS`` and wait until ``/v2/health/ready`` says 200."""
    port = free_port()
    with log.open("wb") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen(
            rtserve_command([], port, args),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready after {timeout}s:\n{server.logs()}")


@pytest.fixture(scope="session")
def e2e_bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A mixed-type fraud bundle and an all-numeric dense bundle on disk."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("e2e-bundles")
    X, y = card_transactions(2000, seed=11)
    fraud = fraud_pipeline().set_params(model__max_iter=10).fit(X, y)
    rtserve.build(fraud, X, name="fraud", version="1").save(root / "fraud-1")
    rng = np.random.default_rng(0)
    X_dense = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    dense = LogisticRegression().fit(X_dense, (X_dense.a > 0).astype(int))
    rtserve.build(dense, X_dense, name="dense", version="1").save(root / "dense-1.tar.gz")
    return root / "fraud-1", root / "dense-1.tar.gz"


@pytest.fixture(scope="module")
def server(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One real server process serving both bundles."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    running = start_server([str(p) for p in e2e_bundles], log)
    yield running
    running.stop()
