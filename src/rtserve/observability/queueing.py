"""Bounded hand-off from the hot path to a background thread: a full queue drops and counts.

Observers call ``BackgroundQueue.put`` on the event loop; it is one ``deque.append`` and never
blocks or wakes anything. One daemon thread per queue wakes every ``interval`` seconds, takes
what has accumulated in batches and hands them to a handler, so a slow sink (a database, a disk)
delays only itself, and the event loop does not pay a thread switch per request. Between batches
the thread calls an optional ``tick`` (periodic work such as refreshing drift gauges).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from rtserve.observability.metrics import Metrics
from rtserve.observability.threads import name_os_thread

T = TypeVar("T")
logger = logging.getLogger("rtserve.observability")
#: The drain interval of observers that keep summaries (drift windows, Prometheus metrics)
#: rather than a record per decision: read every second or scrape at most, they need no
#: fresher figures, and each wake-up takes the GIL from the event loop (five times fewer
#: wake-ups cut their CPU per request by a fifth and the loop's with it, measured at c=64).
SUMMARY_INTERVAL_S = 0.1


class BackgroundQueue(Generic[T]):
    """A bounded queue drained by one daemon thread.

    Args:
        name: the observer's name (thread name and ``observer`` label of the drop/error counters).
        handle: called on the thread with up to ``batch`` items at a time.
        metrics: counts drops and handler failures; None to count only in ``dropped``.
        maxsize: items held at most; ``put`` on a full queue drops the item.
        batch: items handed to ``handle`` at most at a time.
        weigh: the work one item brings (e.g. its rows); None: one each.
        max_weight: the most work handed to ``handle`` at a time (at least one item): its
            C calls (one encoding or numpy operation over the batch) hold the GIL until they
            return, so a large batch would stall the event loop for as long.
        interval: seconds between drains (the most an item waits before it is handled).
        pause: seconds the thread sleeps between two batches of one drain (yields the GIL).
        tick: called on the thread about every ``tick_seconds`` (and once at close).
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        metrics: Metrics | None = None,
        maxsize: int = 10_000,
        batch: int = 256,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 256,
        interval: float = 0.02,
        pause: float = 0.001,
        tick: Callable[[], None] | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self._handle = handle
        self._items: deque[T] = deque()
        self._batch = batch
        self._weigh = weigh
        self._max_weight = max_weight
        self._interval = interval
        self._pause = pause
        self._tick = tick
        self._tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain_lock = threading.Lock()
        self._accepted = 0
        self._handled = 0
        self._dropped = metrics.observer_dropped.labels(name) if metrics is not None else None
        self._errors = metrics.observer_errors.labels(name) if metrics is not None else None
        #: Items dropped so far (also in ``rtserve_observer_dropped_total``).
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Hand one item over without waiting; False (and counted) when the queue is full."""
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self._dropped is not None:
                self._dropped.inc()
            return False
        self._accepted += 1
        self._items.append(item)
        return True

    @property
    def depth(self) -> int:
        """Items waiting now."""
        return len(self._items)

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"rtserve-{self.name}", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Handle what is queued, run ``tick`` once more, and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self._drain()
            if self._tick is not None:
                self._safe(self._tick)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every item queued so far has been handled (tests, shutdown)."""
        target = self._accepted
        deadline = time.monotonic() + timeout
        while self._handled < target and time.monotonic() < deadline:
            if self._thread is None:
                self._drain()
            else:
                time.sleep(0.005)

    def _drain(self) -> None:
        with self._drain_lock:
            while self._items:
                items = self._take()
                self._safe(self._handle, items)
                self._handled += len(items)
                # Hand the GIL to the event loop between batches. A voluntary release
                # (sleep(0)) is usually taken back at once; a short real sleep lets a waiting
                # request run, so a long drain cannot stall requests for whole switch intervals.
                if self._items:
                    time.sleep(self._pause)

    def _take(self) -> list[T]:
        """The next batch: up to ``batch`` items and ``max_weight`` of work (only this thread
        takes items)."""
        count = min(len(self._items), self._batch)
        popleft = self._items.popleft
        weigh = self._weigh
        if weigh is None:
            return [popleft() for _ in range(count)]
        items = [popleft()]
        weight = weigh(items[0])
        while len(items) < count and weight + weigh(self._items[0]) <= self._max_weight:
            items.append(popleft())
            weight += weigh(items[-1])
        return items

    def _run(self) -> None:
        name_os_thread()
        next_tick = time.monotonic() + self._tick_seconds
        while not self._stop.wait(self._interval):
            self._drain()
            if self._tick is not None and time.monotonic() >= next_tick:
                self._safe(self._tick)
                next_tick = time.monotonic() + self._tick_seconds
        self._drain()
        if self._tick is not None:
            self._safe(self._tick)

    def _safe(self, work: Callable[..., None], *args: object) -> None:
        try:
            work(*args)
        except Exception:  # an observer bug must not kill its thread; it is counted and logged
            logger.exception("observer %s failed", self.name)
            if self._errors is not None:
                self._errors.inc()
