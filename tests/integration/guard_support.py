"""Helpers for the guard tests: runtimes that fail, hang or slow down, and apps built around them.

The runtimes are real ``Runtime`` implementations wrapping the bundle's own runtime: they are the
collaborator of the component under test (data plane + guards), not a stand-in for a named server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from rtserve.engine.manager import ModelManager, ServedModel
from rtserve.runtimes.base import ModelOutput, Runtime
from rtserve.server.app import create_app
from rtserve.settings import Settings
from rtserve.types import Columns

DENSE_ROW = {"f0": 0.3, "f1": -1.2, "f2": 0.5, "f3": 2.0}


def records_body(rows: int = 1) -> dict[str, Any]:
    return {"instances": [DENSE_ROW] * rows}


def v2_body(rows: int = 1) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": name, "shape": [rows], "datatype": "FP64", "data": [value] * rows}
            for name, value in DENSE_ROW.items()
        ]
    }


class ControlledRuntime(Runtime):
    """The bundle's runtime, plus switches: fail, hold (hang until released), delay per call."""

    thread_safe = True

    def __init__(self, inner: Runtime, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.failing = False
        self.released = threading.Event()
        self.released.set()
        self.calls = 0
        self.rows_seen = 0
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Every predict from now on hangs until ``release``."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def predict(self, columns: Columns) -> ModelOutput:
        with self._lock:
            self.calls += 1
            self.rows_seen += len(next(iter(columns.values())))
        self.released.wait(timeout=60)
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise RuntimeError("injected runtime failure")
        return self.inner.predict(columns)


def served_with_controlled_runtime(
    manager: ModelManager, bundle: Path, delay: float = 0.0
) -> tuple[ServedModel, ControlledRuntime]:
    served = manager.load(bundle)
    assert served.ready, served.reason
    assert served.predictor is not None
    runtime = ControlledRuntime(served.predictor.runtime, delay)
    served.predictor.runtime = runtime  # the batcher calls predictor.run -> runtime.predict
    return served, runtime


def guarded_app(
    bundle: Path, delay: float = 0.0, **settings: Any
) -> tuple[Starlette, ServedModel, ControlledRuntime]:
    """An app serving ``bundle`` with a controlled runtime; ``settings`` as for ``Settings.load``."""
    resolved = Settings.load(batching__inline_predict_s=0, **settings)
    manager = ModelManager(resolved)
    served, runtime = served_with_controlled_runtime(manager, bundle, delay)
    return create_app(resolved, manager), served, runtime


@contextmanager
def client_for(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextmanager
def live_server(app: Starlette) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
