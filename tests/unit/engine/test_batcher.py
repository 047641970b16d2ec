"""The adaptive batcher: no waiting when idle, batches form under load, every caller gets its own rows."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.engine.batcher import AdaptiveBatcher
from rtserve.engine.long_wait import LONG_WAIT_S
from rtserve.events import RequestTrace
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (fixtures pass through unchanged)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def echo(columns: Columns) -> ModelOutput:
    """A runtime whose output is its input: row identity is visible in every answer."""
    return ModelOutput(value=np.asarray(columns["x"], dtype=np.float64) * 2)


def recording_threads(
    threads: list[str], before: Callable[[], None] = lambda: None
) -> Callable[[Columns], ModelOutput]:
    """``echo`` that appends the name of the thread each call ran on to ``threads``."""

    def predict(columns: Columns) -> ModelOutput:
        threads.append(threading.current_thread().name)
        before()
        return echo(columns)

    return predict


def request(*values: float) -> Columns:
    return {"x": np.array(values, dtype=np.float64)}


class Gate:
    """A runtime that holds its first batch until released, recording every batch size."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, columns: Columns) -> ModelOutput:
        self.sizes.append(len(columns["x"]))
        self.entered.set()
        self.release.wait(5)
        return echo(columns)


@run_async
async def test_an_idle_batcher_runs_a_request_at_once_in_a_batch_of_its_own() -> None:
    batcher = AdaptiveBatcher(echo, max_batch_size=64)
    output, info = await batcher.submit(request(1.0, 2.0), 2)
    np.testing.assert_array_equal(output.value, [2.0, 4.0])
    assert info.batch_requests == 1
    assert info.batch_rows == 2
    assert info.queue_seconds < 0.05
    batcher.close()


@run_async
async def test_requests_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    gate = Gate()
    batcher = AdaptiveBatcher(gate, max_batch_size=64)
    first = asyncio.ensure_future(batcher.submit(request(0.0), 1))
    await asyncio.to_thread(gate.entered.wait, 5)
    waiting = [asyncio.ensure_future(batcher.submit(request(float(i)), 1)) for i in range(1, 11)]
    await asyncio.sleep(0.01)
    assert batcher.queued == 10
    gate.release.set()
    results = await asyncio.gather(first, *waiting)
    assert gate.sizes == [1, 10]
    assert [info.batch_requests for _, info in results] == [1] + [10] * 10
    assert [float(out.value[0]) for out, _ in results] == [2.0 * i for i in range(11)]
    batcher.close()


@run_async
async def test_a_batch_never_exceeds_max_batch_size_rows() -> None:
    gate = Gate()
    batcher = AdaptiveBatcher(gate, max_batch_size=4)
    first = asyncio.ensure_future(batcher.submit(request(0.0), 1))
    await asyncio.to_thread(gate.entered.wait, 5)
    rest = [asyncio.ensure_future(batcher.submit(request(1.0, 1.0, 1.0), 3)) for _ in range(3)]
    rest += [asyncio.ensure_future(batcher.submit(request(1.0), 1)) for _ in range(2)]
    await asyncio.sleep(0.01)
    gate.release.set()
    await asyncio.gather(first, *rest)
    assert max(gate.sizes) <= 4
    assert sum(gate.sizes) == 1 + 9 + 2
    batcher.close()


@run_async
async def test_a_runtime_failure_reaches_every_caller_of_that_batch_only() -> None:
    calls = {"n": 0}

    def flaky(columns: Columns) -> ModelOutput:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return echo(columns)

    batcher = AdaptiveBatcher(flaky)
    with pytest.raises(RuntimeError, match="model exploded"):
        await batcher.submit(request(1.0), 1)
    output, _ = await batcher.submit(request(3.0), 1)
    assert output.value.tolist() == [6.0]
    batcher.close()


@run_async
async def test_a_caller_that_gave_up_is_skipped_and_the_rest_are_answered() -> None:
    gate = Gate()
    batcher = AdaptiveBatcher(gate)
    first = asyncio.ensure_future(batcher.submit(request(0.0), 1))
    await asyncio.to_thread(gate.entered.wait, 5)
    abandoned = asyncio.ensure_future(batcher.submit(request(7.0), 1))
    kept = asyncio.ensure_future(batcher.submit(request(8.0), 1))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    gate.release.set()
    await first
    output, info = await kept
    assert output.value.tolist() == [16.0]
    assert info.batch_requests == 1
    assert gate.sizes == [1, 1]
    batcher.close()


@run_async
async def test_a_fast_runtime_answers_a_lone_request_on_the_event_loop() -> None:
    threads: set[str] = set()

    def where(columns: Columns) -> ModelOutput:
        threads.add(threading.current_thread().name)
        return echo(columns)

    batcher = AdaptiveBatcher(where, inline_below=1.0)
    await batcher.submit(request(1.0), 1)  # learns the runtime's time in a worker thread
    await batcher.submit(request(1.0), 1)  # then runs inline
    assert threading.current_thread().name in threads
    assert any(name.startswith("rt-") for name in threads)
    batcher.close()


@pytest.fixture(scope="module")
def dense_predictor(tmp_path_factory: pytest.TempPathFactory) -> rtserve.Predictor:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(500, 4)), columns=["a", "b", "c", "d"])
    model = LogisticRegression().fit(X, (X.a + X.b > 0).astype(int))
    path: Path = tmp_path_factory.mktemp("batcher") / "dense"
    rtserve.build(model, X, name="dense", version="1").save(path)
    return rtserve.load(path)


@run_async
async def test_thousands_of_concurrent_distinct_requests_each_get_their_own_answer(
    dense_predictor: rtserve.Predictor,
) -> None:
    """Every caller's rows come back in its own answer, whatever batches they rode in."""
    rng = np.random.default_rng(9)
    requests = [
        pd.DataFrame(rng.normal(size=(int(rng.integers(1, 4)), 4)), columns=["a", "b", "c", "d"])
        for _ in range(3000)
    ]
    expected = [dense_predictor.predict(frame) for frame in requests]
    batcher = AdaptiveBatcher(dense_predictor.run, max_batch_size=64, concurrency=2)

    async def one(frame: pd.DataFrame) -> tuple[ModelOutput, int]:
        columns = dense_predictor.validate(frame)
        output, info = await batcher.submit(columns, len(frame))
        return output, info.batch_requests

    answers = await asyncio.gather(*(one(frame) for frame in requests))
    for (output, _), want in zip(answers, expected, strict=True):
        np.testing.assert_array_equal(output.label, want.label)
        np.testing.assert_allclose(output.probabilities, want.probabilities, rtol=0, atol=1e-12)
    assert max(size for _, size in answers) > 1  # they really were batched together
    batcher.close()


@run_async
async def test_a_queued_request_times_out_by_a_timer_and_its_rows_never_run() -> None:
    gate = Gate()
    batcher = AdaptiveBatcher(gate)
    first = asyncio.ensure_future(batcher.submit(request(0.0), 1))
    await asyncio.to_thread(gate.entered.wait, 5)
    tasks_before = len(asyncio.all_tasks())
    with pytest.raises(TimeoutError):
        await batcher.submit(request(9.0), 1, timeout=0.05)
    assert len(asyncio.all_tasks()) == tasks_before  # a timer, not a wait_for task
    gate.release.set()
    await first
    assert gate.sizes == [1]  # the timed-out request was skipped, not predicted
    batcher.close()


@run_async
async def test_only_a_request_still_waiting_after_a_long_wait_calls_its_traces_hook() -> None:
    waits: list[str] = []
    delay = [2 * LONG_WAIT_S]

    def slow_then_fast(columns: Columns) -> ModelOutput:
        time.sleep(delay[0])
        return echo(columns)

    trace = RequestTrace("r", 0.0, on_wait=lambda: waits.append("r"))
    batcher = AdaptiveBatcher(slow_then_fast)  # never inline: every request queues
    try:
        await batcher.submit(request(1.0), 1, trace=trace)  # slow: still waiting at the check
        assert waits == ["r"]
        delay[0] = 0.0
        await batcher.submit(request(1.0), 1, trace=trace)  # answered before the check
        await asyncio.sleep(2 * LONG_WAIT_S)
        assert waits == ["r"]
    finally:
        batcher.close()


@run_async
async def test_a_timeout_longer_than_the_long_wait_still_fires_on_time() -> None:
    def hangs(columns: Columns) -> ModelOutput:
        time.sleep(6 * LONG_WAIT_S)
        return echo(columns)

    batcher = AdaptiveBatcher(hangs)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await batcher.submit(request(1.0), 1, timeout=3 * LONG_WAIT_S)
    waited = time.perf_counter() - started
    assert 3 * LONG_WAIT_S <= waited < 5 * LONG_WAIT_S
    batcher.close()


@run_async
async def test_a_batch_cheaper_than_the_inline_limit_runs_on_the_event_loop() -> None:
    threads: list[str] = []
    recording = recording_threads(threads)
    loop_thread = threading.current_thread().name
    cheap = AdaptiveBatcher(recording, inline_below=1.0)
    await cheap.submit(request(1.0), 1)  # cost unknown yet: the pool; now it is learned
    answers = await asyncio.gather(*(cheap.submit(request(float(i)), 1) for i in range(20)))
    assert [float(out.value[0]) for out, _ in answers] == [2.0 * i for i in range(20)]
    assert cheap.stats.batches < 21  # the burst was batched ...
    assert threads[1:] == [loop_thread] * (len(threads) - 1)  # ... and ran on the loop
    cheap.close()

    threads.clear()
    parallel = AdaptiveBatcher(recording, inline_below=1.0, concurrency=2)
    await parallel.submit(request(1.0), 1)
    await asyncio.gather(*(parallel.submit(request(float(i)), 1) for i in range(20)))
    assert loop_thread not in threads[1:]  # batches that may run at once stay in the pool
    parallel.close()


@run_async
async def test_one_slow_prediction_does_not_send_a_fast_model_to_the_thread_pool() -> None:
    threads: list[str] = []
    slow = [True]

    def first_call_busy() -> None:
        if slow[0]:  # e.g. the first call after loading, or a moment of CPU contention
            slow[0] = False
            busy_until = time.thread_time() + 0.02
            while time.thread_time() < busy_until:
                pass

    sometimes_slow = recording_threads(threads, first_call_busy)
    batcher = AdaptiveBatcher(sometimes_slow, inline_below=0.005)
    await batcher.submit(request(1.0), 1)  # 20 ms of CPU: learned, but not for good
    for _ in range(3):
        await batcher.submit(request(1.0), 1)
    assert threads[-1] == threading.current_thread().name  # back on the event loop
    batcher.close()


@run_async
async def test_a_runtime_that_blocks_longer_than_a_switch_interval_never_runs_inline() -> None:
    threads: list[str] = []
    # no CPU, but the event loop would stall
    blocking = recording_threads(threads, lambda: time.sleep(sys.getswitchinterval() * 4))

    # 20 ms of waiting and next to no CPU: its cost is its wall time, over the 10 ms threshold
    batcher = AdaptiveBatcher(blocking, inline_below=0.01)
    for _ in range(3):
        await batcher.submit(request(1.0), 1)
    assert all(name.startswith("rt-") for name in threads)
    batcher.close()


@run_async
async def test_a_burst_on_an_idle_fast_model_forms_batches_instead_of_running_one_by_one() -> None:
    sizes: list[int] = []

    def fast(columns: Columns) -> ModelOutput:
        sizes.append(len(columns["x"]))
        return echo(columns)

    batcher = AdaptiveBatcher(fast, inline_below=1.0)
    await batcher.submit(request(0.0), 1)  # learns that the runtime is fast
    await batcher.submit(request(0.0), 1)  # a lone request then runs inline
    sizes.clear()
    answers = await asyncio.gather(*(batcher.submit(request(float(i)), 1) for i in range(64)))
    assert [float(output.value[0]) for output, _ in answers] == [2.0 * i for i in range(64)]
    assert len(sizes) < 8  # batched: not 64 predictions of one row
    batcher.close()


@run_async
async def test_batches_that_finish_out_of_order_leave_nothing_queued_behind() -> None:
    """One deque holds every waiting request; a batch finishing before an earlier one leaves
    the deque in order, and once both are answered the batcher is idle again."""
    threads: list[str] = []
    held = threading.Event()

    def first_slow(columns: Columns) -> ModelOutput:
        threads.append(threading.current_thread().name)
        if float(columns["x"][0]) == 0.0:
            held.wait(5)
        return echo(columns)

    batcher = AdaptiveBatcher(first_slow, concurrency=2, inline_below=1.0)
    slow = asyncio.ensure_future(batcher.submit(request(0.0), 1))  # cost unknown: the pool
    await asyncio.sleep(0.01)
    output, _ = await batcher.submit(request(1.0), 1)  # the second runtime thread, at once
    assert output.value.tolist() == [2.0]
    assert not slow.done()
    assert batcher.queued == 0
    assert batcher.queue_state().queued_requests == 0
    held.set()
    await slow
    threads.clear()
    await batcher.submit(request(2.0), 1)  # idle and known to be fast: inline, on the loop
    assert threads == [threading.current_thread().name]
    batcher.close()
