"""Adaptive batching: a standalone stage between validated requests and a runtime.

A request that finds the runtime idle runs at once; requests that arrive while a batch runs wait and
form the next batch together (up to ``max_batch_size`` rows). ``max_wait`` lets a lone request wait
that long for company; it is 0 by default so an idle server adds no latency.

Batches run in the runtime's thread pool (ONNX Runtime releases the GIL), except those expected to
cost less than ``inline_below``: for a fast model the hop to a thread costs more than the batch.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rtserve.errors import DeadlineExceededError
from rtserve.events import BatchInfo
from rtserve.guard.admission import QueueState
from rtserve.guard.deadline import Deadline
from rtserve.observability import context as request_context
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns

#: Only requests this small may run inline on the event loop.
_INLINE_MAX_ROWS = 8


#: A request still waiting this long (seconds) is told so (``RequestContext.on_wait``: its
#: transport starts watching for a disconnect) and gets its timeout timer. Checked by one timer
#: per batcher, at most four times per such wait, not one timer per request: most requests are
#: answered well within it.
LONG_WAIT_S = 0.05


@dataclass(slots=True)
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[tuple[ModelOutput, BatchInfo]]
    submitted: float
    deadline: Deadline | None = None
    timeout: float | None = None
    context: request_context.RequestContext | None = None
    timer: asyncio.TimerHandle | None = None


@dataclass
class BatchStats:
    """Counters a metrics exporter reads."""

    batches: int = 0
    rows: int = 0
    requests: int = 0
    expired: int = 0  # requests dropped because their deadline passed while queued


def concat_columns(parts: list[Columns]) -> Columns:
    """Join several requests' columns field by field (object arrays stay object arrays)."""
    if len(parts) == 1:
        return parts[0]
    out: Columns = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts]
        kinds = {a.dtype.kind for a in arrays}
        mixed_non_numeric = len({a.dtype for a in arrays}) > 1 and not kinds <= {"f", "i", "u"}
        if "O" in kinds or mixed_non_numeric:
            out[name] = np.concatenate([a.astype(object) for a in arrays])
        else:
            out[name] = np.concatenate(arrays)
    return out


def _cost(wall: float, cpu: float) -> float:
    """What one prediction cost, for the inline decision: its CPU time, unless it took longer
    than a GIL switch interval, then its wall time.

    In a worker thread the wall time of a fast prediction includes waits for the GIL and the
    CPU; learning from it kept a 0.1 ms model's estimate above the inline threshold, and every
    request then paid for the thread hop (twice the p50 at c=1). Those waits last about a
    switch interval at most, so a longer wall time is the runtime's own: a model that blocks
    or hangs is never taken for a fast one.
    """
    return wall if wall > sys.getswitchinterval() else cpu


def _time_out(future: asyncio.Future[tuple[ModelOutput, BatchInfo]]) -> None:
    if not future.done():  # a queued request is then skipped; a running batch's answer dropped
        future.set_exception(TimeoutError())


class AdaptiveBatcher:
    """Groups concurrent requests for one runtime; each caller gets exactly its own rows back.

    ``predict`` is the runtime's synchronous predict; it runs in a private thread pool of
    ``concurrency`` threads (more than one only for runtimes that are thread-safe and release the
    GIL, such as ONNX Runtime).
    """

    def __init__(
        self,
        predict: Callable[[Columns], ModelOutput],
        *,
        max_batch_size: int = 256,
        max_wait: float = 0.0,
        concurrency: int = 1,
        name: str = "model",
        inline_below: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or concurrency < 1 or max_wait < 0:
            raise ValueError("max_batch_size and concurrency must be >= 1, max_wait >= 0")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.concurrency = concurrency
        self._queue: deque[_Pending] = deque()
        self._rows_queued = 0  # sum of the queued requests' rows, kept as they come and go
        self._drains: set[asyncio.Task[None]] = set()
        self._running = 0
        self._started: dict[int, float] = {}  # running batch -> when its predict started
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"rt-{name}")
        self.stats = BatchStats()
        # A lone small request on an idle model whose predict is known to take less than
        # ``inline_below`` seconds runs right on the event loop: the hop to a worker thread and
        # back would cost more than the prediction. Under load batches always use the pool, so
        # the loop keeps parsing the next requests while the runtime works.
        self.inline_below = inline_below
        self._typical_seconds = float("inf")  # least of the recent small batches' predict times
        self._recent: deque[float] = deque(maxlen=16)
        self._per_row = float("inf")  # least of the recent batches' cost per row
        self._recent_per_row: deque[float] = deque(maxlen=16)
        self._waiting: deque[_Pending] = deque()  # queued requests in submit order (and time)
        self._long_wait_check: asyncio.TimerHandle | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Batches running now."""
        return self._running

    def queue_state(self) -> QueueState:
        """What waits and runs now, for admission control."""
        now = time.perf_counter()
        oldest = min(self._started.values(), default=now)
        return QueueState(
            queued_requests=len(self._queue),
            queued_rows=self._queued_rows(),
            running_batches=self._running,
            concurrency=self.concurrency,
            max_batch_size=self.max_batch_size,
            running_for=now - oldest,
        )

    async def submit(
        self,
        columns: Columns,
        rows: int,
        deadline: Deadline | None = None,
        timeout: float | None = None,
    ) -> tuple[ModelOutput, BatchInfo]:
        """Queue one request's validated columns; wait for its own outputs and batch timings.

        A request whose ``deadline`` passes while it waits is dropped before its batch runs (its
        caller gets ``DeadlineExceededError``); so is one whose caller was cancelled. Past
        ``timeout`` seconds of waiting the caller gets ``TimeoutError``: a timer, set only once
        the request has waited ``LONG_WAIT_S`` (or at once for a shorter timeout), so the many
        requests answered sooner never create and cancel one. A lone request on an idle, fast
        model runs inline after one turn of the event loop and never waits at all.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(
            columns, rows, loop.create_future(), time.perf_counter(), deadline, timeout
        )
        if (
            rows <= _INLINE_MAX_ROWS
            and self._running == 0
            and not self._queue
            and self._typical_seconds < self.inline_below
        ):
            self._running += 1  # hold the runtime: requests arriving meanwhile queue behind us
            try:
                # One turn of the event loop: requests already received (under load, a whole
                # burst) get to validate and queue. Without it every request of a burst found
                # the runtime idle and ran alone on the loop, and batching never happened.
                await asyncio.sleep(0)
            except BaseException:
                self._running -= 1
                raise
            if not self._queue:
                return self._predict_inline(columns, rows)
            self._queue.appendleft(pending)  # company came: one batch, this request first
            self._rows_queued += rows
            self._start_drain(loop)
        else:
            self._queue.append(pending)
            self._rows_queued += rows
            if self._running < self.concurrency:
                self._running += 1
                self._start_drain(loop)
        self._watch_wait(pending, loop)
        try:
            return await pending.future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()

    def _watch_wait(self, pending: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``pending`` checked once it has waited ``LONG_WAIT_S`` (``_check_long_waits``)."""
        if pending.timeout is not None and pending.timeout < LONG_WAIT_S:
            pending.timer = loop.call_later(pending.timeout, _time_out, pending.future)
        pending.context = request_context.current()
        self._waiting.append(pending)
        if self._long_wait_check is None:
            self._long_wait_check = loop.call_later(LONG_WAIT_S, self._check_long_waits)

    def _check_long_waits(self) -> None:
        """Requests queued ``LONG_WAIT_S`` ago and still waiting: tell their request context
        (a transport then watches for a disconnect) and start their timeout timers."""
        self._long_wait_check = None
        now = time.perf_counter()
        waiting = self._waiting
        while waiting and waiting[0].submitted + LONG_WAIT_S <= now:
            pending = waiting.popleft()
            if pending.future.done():
                continue
            if pending.timer is None and pending.timeout is not None:
                left = pending.timeout - (now - pending.submitted)
                if left <= 0:
                    _time_out(pending.future)
                    continue
                pending.timer = pending.future.get_loop().call_later(
                    left, _time_out, pending.future
                )
            context = pending.context
            if context is not None and context.on_wait is not None:
                context.on_wait()
        if waiting:  # not sooner than a quarter of the wait: a few checks per wait, at most
            due = max(waiting[0].submitted + LONG_WAIT_S - now, LONG_WAIT_S / 4)
            self._long_wait_check = asyncio.get_running_loop().call_later(
                due, self._check_long_waits
            )

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run queued batches until the queue is empty (the caller took a runtime slot)."""
        drain = loop.create_task(self._drain())
        self._drains.add(drain)  # a reference keeps the task from being garbage-collected
        drain.add_done_callback(self._drains.discard)

    def _predict_inline(self, columns: Columns, rows: int) -> tuple[ModelOutput, BatchInfo]:
        """Predict on the event loop, in the runtime slot the caller holds (and releases)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            output = self._predict(columns)
        finally:
            self._running -= 1
        elapsed = time.perf_counter() - started
        self._learn(_cost(elapsed, time.thread_time() - cpu_started), rows)
        self.stats.batches += 1
        self.stats.requests += 1
        self.stats.rows += rows
        return output, BatchInfo(0.0, elapsed, rows, 1)

    def _timed_predict(self, columns: Columns) -> tuple[ModelOutput, float]:
        """Predict (in a worker thread, or inline for a cheap batch); also return what the
        prediction cost (see ``_cost``)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        output = self._predict(columns)
        return output, _cost(time.perf_counter() - started, time.thread_time() - cpu_started)

    def _learn(self, seconds: float, rows: int) -> None:
        """Keep the typical cost of a small batch and of a row: the least of the recent ones."""
        if rows <= _INLINE_MAX_ROWS:
            self._recent.append(seconds)
            self._typical_seconds = min(self._recent)
        if rows > 0:
            self._recent_per_row.append(seconds / rows)
            self._per_row = min(self._recent_per_row)

    def _inline_batch(self, rows: int) -> bool:
        """Whether a batch of ``rows`` is expected to cost less than ``inline_below``, so that it
        runs on the event loop rather than in the runtime's thread.

        On a busy core the hop to the thread and back costs more than a fast model's batch: the
        thread must wait for the event loop to hand over the GIL (up to a switch interval, 5 ms,
        at both ends), and every request of the batch waits with it. With several runtime threads
        batches always go to the pool, so that they can run at once.
        """
        if self.concurrency > 1:
            return False
        return self._typical_seconds + self._per_row * rows < self.inline_below

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait > 0 and self._queued_rows() < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)
                batch = self._take()
                if not batch:
                    continue
                merged = concat_columns([p.columns for p in batch])
                batch_rows = sum(p.rows for p in batch)
                inline = self._inline_batch(batch_rows)
                started = time.perf_counter()
                token = id(batch)
                self._started[token] = started
                try:
                    if inline:
                        output, own_seconds = self._timed_predict(merged)
                    else:
                        output, own_seconds = await loop.run_in_executor(
                            self._pool, self._timed_predict, merged
                        )
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                finally:
                    del self._started[token]
                predict_seconds = time.perf_counter() - started
                self._record(batch)
                self._learn(own_seconds, batch_rows)  # the runtime's CPU time, not the hop
                start = 0
                for pending in batch:
                    stop = start + pending.rows
                    if not pending.future.done():
                        info = BatchInfo(
                            queue_seconds=started - pending.submitted,
                            predict_seconds=predict_seconds,
                            batch_rows=batch_rows,
                            batch_requests=len(batch),
                        )
                        pending.future.set_result((output.rows(start, stop), info))
                    start = stop
                if inline and self._queue:
                    await asyncio.sleep(0)  # let the loop serve others before the next batch
        finally:
            self._running -= 1

    def _queued_rows(self) -> int:
        return self._rows_queued

    def _take(self) -> list[_Pending]:
        """Pop queued requests up to ``max_batch_size`` rows (a bigger single request runs alone)."""
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # the caller gave up (cancelled or timed out)
                self._pop()
                continue
            if head.deadline is not None and head.deadline.expired:  # never run expired work
                self._pop()
                self.stats.expired += 1
                try:
                    head.deadline.check("its batch ran")
                except DeadlineExceededError as exc:
                    head.future.set_exception(exc)
                continue
            if batch and rows + head.rows > self.max_batch_size:
                break
            batch.append(self._pop())
            rows += head.rows
        return batch

    def _pop(self) -> _Pending:
        pending = self._queue.popleft()
        self._rows_queued -= pending.rows
        return pending

    def _record(self, batch: list[_Pending]) -> None:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.rows += sum(p.rows for p in batch)

    def close(self) -> None:
        """Stop the worker threads once running batches finish."""
        self._pool.shutdown(wait=True, cancel_futures=False)
