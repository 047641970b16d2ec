"""BackgroundQueue: the hot path hands over without waiting; a full queue drops and counts."""

from __future__ import annotations

import threading
import time

from rtserve.observability.metrics import Metrics
from rtserve.observability.queueing import BackgroundQueue


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_full_queue_drops_and_counts_without_blocking_the_caller():
    metrics = Metrics()
    release = threading.Event()
    handled: list[int] = []

    def slow(batch: list[int]) -> None:
        release.wait(10)
        handled.extend(batch)

    q: BackgroundQueue[int] = BackgroundQueue(
        "slow", slow, metrics=metrics, maxsize=5, batch=1, interval=0.01
    )
    q.start()
    q.put(0)
    time.sleep(0.1)  # the thread took item 0 and is stuck in the handler
    started = time.perf_counter()
    accepted = [q.put(i) for i in range(1, 21)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, "put must never wait for the consumer"
    assert accepted.count(True) == 5
    assert q.dropped == 15
    assert _value(metrics, "rtserve_observer_dropped_total", observer="slow") == 15
    release.set()
    q.close()
    assert handled == [0, 1, 2, 3, 4, 5]


def test_items_are_handled_in_batches_in_order_and_close_drains_the_queue():
    seen: list[list[int]] = []
    q: BackgroundQueue[int] = BackgroundQueue("order", seen.append, maxsize=1000, batch=64)
    for i in range(200):
        q.put(i)
    q.start()
    q.close()
    assert [i for batch in seen for i in batch] == list(range(200))
    assert max(len(b) for b in seen) <= 64


def test_a_failing_handler_is_counted_and_the_thread_keeps_going():
    metrics = Metrics()
    good: list[int] = []

    def handle(batch: list[int]) -> None:
        if 13 in batch:
            raise RuntimeError("bad item")
        good.extend(batch)

    q: BackgroundQueue[int] = BackgroundQueue("flaky", handle, metrics=metrics, batch=1)
    q.start()
    for i in (12, 13, 14):
        q.put(i)
    q.flush()
    q.close()
    assert good == [12, 14]
    assert _value(metrics, "rtserve_observer_errors_total", observer="flaky") == 1


def test_tick_runs_periodically_between_items():
    ticks: list[float] = []
    q: BackgroundQueue[int] = BackgroundQueue(
        "ticker",
        lambda batch: None,
        interval=0.01,
        tick=lambda: ticks.append(time.monotonic()),
        tick_seconds=0.05,
    )
    q.start()
    time.sleep(0.3)
    q.close()
    assert len(ticks) >= 3
