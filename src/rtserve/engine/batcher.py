"""Adaptive batching: a standalone stage between validated requests and a runtime.

A request that finds the runtime idle runs at once; requests that arrive while a batch runs wait and
form the next batch together (up to ``max_batch_size`` rows). ``max_wait`` lets a lone request wait
that long for company; it is 0 by default so an idle server adds no latency.

Batches run in the runtime's thread pool (ONNX Runtime releases the GIL), except those the cost
model (``rtserve.engine.batch_cost``) expects to cost less than ``inline_below``: for a fast model
the hop to a thread costs more than the batch. Requests that wait long are the long-wait watch's
(``rtserve.engine.long_wait``): timeout timers, and the trace's ``on_wait`` hook.

This module is the queue and the drain. Every request waiting for its answer is in one deque, in
submission order, from ``submit`` until its answer is set: the first ``_taken`` of them are in
running batches (or were skipped), the rest are queued. Requests leave the deque from its head,
once answered, so the long-wait watch reads the same deque.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from rtserve.engine.batch_cost import CostModel, prediction_cost
from rtserve.engine.long_wait import LongWaitWatch
from rtserve.errors import DeadlineExceededError
from rtserve.events import BatchInfo, RequestTrace
from rtserve.guard.admission import QueueState
from rtserve.guard.deadline import Deadline
from rtserve.observability.threads import name_os_thread
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


@dataclass(slots=True)
class _Pending:
    """One request in the batcher's deque (a ``long_wait.Waiter``)."""

    columns: Columns
    rows: int
    future: asyncio.Future[tuple[ModelOutput, BatchInfo]]
    submitted: float
    deadline: Deadline | None = None
    timeout: float | None = None
    trace: RequestTrace | None = None
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
        #: Every request from ``submit`` until answered, in submission order (module docstring).
        self._pending: deque[_Pending] = deque()
        self._taken = 0  # the first requests of ``_pending`` that are in batches (or skipped)
        self._rows_queued = 0  # sum of the queued requests' rows, kept as they come and go
        self._drains: set[asyncio.Task[None]] = set()
        self._running = 0
        self._started: dict[int, float] = {}  # running batch -> when its predict started
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"rt-{name}", initializer=name_os_thread
        )
        self.stats = BatchStats()
        # A lone small request on an idle model whose predict is known to take less than
        # ``inline_below`` seconds runs right on the event loop: the hop to a worker thread and
        # back would cost more than the prediction. Under load batches always use the pool
        # unless they, too, are cheap, so the loop keeps parsing the next requests meanwhile.
        self.cost = CostModel(inline_below, concurrency)
        self._watch = LongWaitWatch(self._pending)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._pending) - self._taken

    @property
    def busy(self) -> int:
        """Batches running now."""
        return self._running

    def queue_state(self) -> QueueState:
        """What waits and runs now, for admission control."""
        now = time.perf_counter()
        oldest = min(self._started.values(), default=now)
        return QueueState(
            queued_requests=self.queued,
            queued_rows=self._rows_queued,
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
        trace: RequestTrace | None = None,
    ) -> tuple[ModelOutput, BatchInfo]:
        """Queue one request's validated columns; wait for its own outputs and batch timings.

        A request whose ``deadline`` passes while it waits is dropped before its batch runs (its
        caller gets ``DeadlineExceededError``); so is one whose caller was cancelled. Past
        ``timeout`` seconds of waiting the caller gets ``TimeoutError``: a timer, set only once
        the request has waited ``LONG_WAIT_S`` (or at once for a shorter timeout), so the many
        requests answered sooner never create and cancel one; ``trace.on_wait`` is called then
        too (``rtserve.engine.long_wait``). A lone request on an idle, fast model runs inline
        after one turn of the event loop and never waits at all.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(
            columns, rows, loop.create_future(), time.perf_counter(), deadline, timeout, trace
        )
        # Idle (no batch running, so none taken either: the deque is empty) and cheap.
        if self._running == 0 and not self._pending and self.cost.lone_inline(rows):
            self._running += 1  # hold the runtime: requests arriving meanwhile queue behind us
            try:
                # One turn of the event loop: requests already received (under load, a whole
                # burst) get to validate and queue. Without it every request of a burst found
                # the runtime idle and ran alone on the loop, and batching never happened.
                await asyncio.sleep(0)
            except BaseException:
                self._running -= 1
                raise
            if not self._pending:
                return self._predict_inline(columns, rows)
            # Company came: one batch, this request first (no drain ran meanwhile: we held the
            # runtime, so nothing is taken and the deque stays in submission order).
            self._pending.appendleft(pending)
            self._rows_queued += rows
            self._watch.watch(pending, loop)
            self._watch.prepended(pending)
            self._start_drain(loop)
        else:
            self._pending.append(pending)
            self._rows_queued += rows
            self._watch.watch(pending, loop)
            if self._running < self.concurrency:
                self._running += 1
                self._start_drain(loop)
        try:
            return await pending.future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run queued batches until the queue is empty (the caller took a runtime slot)."""
        drain = loop.create_task(self._drain())
        self._drains.add(drain)  # a reference keeps the task from being garbage-collected
        drain.add_done_callback(self._drains.discard)

    def _predict_inline(self, columns: Columns, rows: int) -> tuple[ModelOutput, BatchInfo]:
        """Predict on the event loop, in the runtime slot the caller holds (and releases)."""
        started = time.perf_counter()
        try:
            output = self._predict(columns)
        finally:
            self._running -= 1
        elapsed = time.perf_counter() - started
        self.cost.learn(elapsed, rows)  # wall time: see _drain
        self.stats.batches += 1
        self.stats.requests += 1
        self.stats.rows += rows
        return output, BatchInfo(0.0, elapsed, rows, 1)

    def _timed_predict(self, columns: Columns) -> tuple[ModelOutput, float]:
        """Predict in a worker thread; also return what the prediction cost
        (``prediction_cost``)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        output = self._predict(columns)
        return output, prediction_cost(
            time.perf_counter() - started, time.thread_time() - cpu_started
        )

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._taken < len(self._pending):
                if self.max_wait > 0 and self._rows_queued < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)
                batch = self._take()
                if not batch:
                    self._release()
                    continue
                merged = concat_columns([p.columns for p in batch])
                batch_rows = sum(p.rows for p in batch)
                inline = self.cost.batch_inline(batch_rows)
                started = time.perf_counter()
                token = id(batch)
                self._started[token] = started
                try:
                    if inline:  # costs its wall time: the other requests wait that long
                        # (prediction_cost's CPU time is for a worker thread, whose wall time
                        # includes GIL waits; and thread_time is a system call)
                        output = self._predict(merged)
                        own_seconds = time.perf_counter() - started
                    else:
                        output, own_seconds = await loop.run_in_executor(
                            self._pool, self._timed_predict, merged
                        )
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    self._release()
                    continue
                finally:
                    del self._started[token]
                predict_seconds = time.perf_counter() - started
                self._record(batch)
                self.cost.learn(own_seconds, batch_rows)  # the prediction's own cost, not the hop
                self._answer(batch, output, started, predict_seconds, batch_rows)
                self._release()
                if inline and self._taken < len(self._pending):
                    await asyncio.sleep(0)  # let the loop serve others before the next batch
        finally:
            self._running -= 1

    def _answer(
        self,
        batch: list[_Pending],
        output: ModelOutput,
        started: float,
        predict_seconds: float,
        batch_rows: int,
    ) -> None:
        """Give each caller of ``batch`` (still waiting) its own rows of ``output``."""
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

    def _take(self) -> list[_Pending]:
        """Take queued requests up to ``max_batch_size`` rows (a bigger single request runs
        alone), skipping those whose caller gave up or whose deadline passed."""
        batch: list[_Pending] = []
        rows = 0
        for head in islice(self._pending, self._taken, None):
            if head.future.done():  # the caller gave up (cancelled or timed out)
                self._skip(head)
                continue
            if head.deadline is not None and head.deadline.expired:  # never run expired work
                self._skip(head)
                self.stats.expired += 1
                try:
                    head.deadline.check("its batch ran")
                except DeadlineExceededError as exc:
                    head.future.set_exception(exc)
                continue
            if batch and rows + head.rows > self.max_batch_size:
                break
            self._skip(head)
            batch.append(head)
            rows += head.rows
        return batch

    def _skip(self, pending: _Pending) -> None:
        """Move the head of the queue past ``pending`` (into a batch, or given up)."""
        self._taken += 1
        self._rows_queued -= pending.rows

    def _release(self) -> None:
        """Remove the answered requests at the head of the deque (a batch that finished before
        an earlier one waits for it: the deque stays in submission order)."""
        pending = self._pending
        removed = 0
        while removed < self._taken and pending[0].future.done():
            pending.popleft()
            removed += 1
        if removed:
            self._taken -= removed
            self._watch.removed(removed)

    def _record(self, batch: list[_Pending]) -> None:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.rows += sum(p.rows for p in batch)

    def close(self) -> None:
        """Stop the worker threads once running batches finish."""
        self._pool.shutdown(wait=True, cancel_futures=False)
