"""rtserve's threads carry their names to the OS, so /proc, top -H and perf can tell them apart."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rtserve.engine.batcher import AdaptiveBatcher
from rtserve.observability.queueing import BackgroundQueue
from rtserve.observability.threads import name_os_thread
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="OS thread names are read from Linux's /proc"
)


def _os_name() -> str:
    """The calling thread's name as the OS shows it."""
    return Path("/proc/thread-self/comm").read_text().strip()


def _in_thread(name: str, work: Callable[[], None] | None) -> str:
    seen: list[str] = []

    def run() -> None:
        if work is not None:
            work()
        seen.append(_os_name())

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join(5)
    return seen[0]


def test_a_thread_takes_its_python_name_cut_to_the_15_bytes_linux_keeps() -> None:
    assert _in_thread("rtserve-decisions", name_os_thread) == "rtserve-decisio"


def test_an_explicit_name_wins_over_the_python_name() -> None:
    assert _in_thread("Thread-7", lambda: name_os_thread("rt-card_0")) == "rt-card_0"


def test_a_thread_that_does_not_name_itself_shows_the_process_name() -> None:
    assert _in_thread("rtserve-unnamed", None) != "rtserve-unnamed"


def test_an_observer_queue_thread_is_named_rtserve_and_its_observer() -> None:
    seen: list[str] = []
    queue: BackgroundQueue[int] = BackgroundQueue(
        "drift", lambda items: seen.append(_os_name()), interval=0.01
    )
    queue.start()
    queue.put(1)
    queue.flush(5)
    queue.close()
    assert seen == ["rtserve-drift"]


def test_a_runtime_pool_thread_is_named_rt_and_its_model() -> None:
    seen: list[str] = []

    def predict(columns: Columns) -> ModelOutput:
        seen.append(_os_name())
        return ModelOutput(value=np.asarray(columns["x"]) * 2)

    async def one() -> None:
        batcher = AdaptiveBatcher(predict, name="card")  # inline_below 0: every batch in the pool
        await batcher.submit({"x": np.array([1.0])}, 1)
        batcher.close()

    asyncio.run(one())
    assert seen == ["rt-card_0"]
