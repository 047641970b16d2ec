"""A real rtserve server whose model takes a fixed, known time per call, for the fault tests.

Run as ``python tests/e2e/slow_server.py BUNDLE PORT DELAY_S THREADS [SETTINGS_JSON]``. The model is
the bundle's real runtime behind ``SlowRuntime`` (a ``Runtime`` that sleeps ``DELAY_S`` then
predicts), so capacity is ``THREADS / DELAY_S`` requests per second however busy the machine's
CPUs are with other work. The process serves through ``rtserve.server.runner.run`` (the same
graceful shutdown as ``rtserve serve``) and prints ``accepted=N completed=M`` for the prediction
requests it took when it exits.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rtserve.engine.manager import ModelManager
from rtserve.observability.logging import configure_logging
from rtserve.runtimes.base import ModelOutput, Runtime
from rtserve.server.app import create_app
from rtserve.server.runner import run
from rtserve.settings import Settings
from rtserve.types import Columns


class SlowRuntime(Runtime):
    """The real runtime, taking ``delay`` seconds per call (sleeping: the GIL is free)."""

    thread_safe = True

    def __init__(self, inner: Runtime, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def predict(self, columns: Columns) -> ModelOutput:
        time.sleep(self.delay)
        return self.inner.predict(columns)


class Counting:
    """ASGI middleware counting prediction requests taken and answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.accepted = 0
        self.completed = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        self.accepted += 1

        async def counted(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.completed += 1
            await send(message)

        await self.app(scope, receive, counted)

    def records_lane(self) -> Any:
        """The app's records lane (which rtserve's HTTP protocol hands predict requests to,
        past any ASGI middleware), counting what it takes and answers too."""
        lane = self.app.records_lane()
        if lane is None or getattr(lane, "counted", False):
            return lane
        arrived, write = lane.arrived, lane._write

        def counted_arrived(request: Any) -> None:
            self.accepted += 1
            arrived(request)

        def counted_write(request: Any, *args: Any) -> None:
            answered = not (request.disconnected or request.protocol.transport.is_closing())
            write(request, *args)
            self.completed += answered

        lane.arrived, lane._write, lane.counted = counted_arrived, counted_write, True
        return lane

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def main() -> None:
    bundle, port, delay, threads = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    settings = Settings.load(
        server__port=port,
        batching__runtime_threads=threads,
        batching__inline_predict_s=0,
        logging={"access_log": False, "level": "warning"},
        **extra,
    )
    configure_logging(settings.logging.level)
    manager = ModelManager(settings)
    served = manager.load(bundle)
    assert served.predictor is not None, served.reason
    served.predictor.runtime = SlowRuntime(served.predictor.runtime, delay)
    # the batcher was made for the original runtime; give it the slow one's concurrency
    from rtserve.engine.batcher import AdaptiveBatcher

    served.batcher = AdaptiveBatcher(
        served.predictor.run,
        max_batch_size=settings.batching.max_batch_size,
        concurrency=threads,
        name=served.name,
    )
    app = create_app(settings, manager)
    counting = Counting(app)
    try:
        run(settings, counting)  # type: ignore[arg-type]
    finally:
        print(f"accepted={counting.accepted} completed={counting.completed}", flush=True)


if __name__ == "__main__":
    main()
