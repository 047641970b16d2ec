"""The load loops of one client process: closed (fixed concurrency) and open (fixed rate).

Closed loop: ``concurrency`` workers, each with its own keep-alive connection, send the next
request as soon as the previous answer arrives; latency is measured from the send.

Open loop: a scheduler hands out request *i* at ``start + i / rate`` whatever the server does;
workers (one connection each, ``concurrency`` of them) take requests as they come due. Latency is
measured from the **scheduled** time, so a server that stalls shows the stall as latency of
every request that should have gone out meanwhile (no coordinated omission), and the number of
requests sent is ``rate × duration`` however slow the answers are. Requests still waiting for a
free connection when the drain deadline passes are counted as ``not_sent`` errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from rtserve.errors import LoadTestError
from rtserve.loadgen.stats import Recorder
from rtserve.loadgen.wire import Connection, Endpoint, MalformedResponseError

#: An open-loop request that leaves later than this after its scheduled time counts as ``late``.
LATE_S = 0.001
#: How often the timeout watchdog and the progress reporter look.
TICK_S = 0.05
#: Pause after a failed connect, so a dead server does not turn the loop into a busy spin.
RECONNECT_PAUSE_S = 0.05

#: ``progress(phase, completed, elapsed_s)``; phase is ``"warmup"`` or ``"measure"``.
Progress = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Workload:
    """What to send: pre-encoded HTTP requests to one endpoint, used in turn."""

    endpoint: Endpoint
    requests: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.requests:
            raise LoadTestError("a workload needs at least one request", field="requests")


@dataclass(frozen=True)
class Phase:
    """One phase of one client process: a duration or a request count, closed or open loop."""

    concurrency: int
    rate: float | None = None
    duration_s: float | None = None
    requests: int | None = None


class _Worker:
    __slots__ = ("conn", "deadline", "expired")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.deadline: float | None = None  # set while a request is in flight
        self.expired = False


class Client:
    """One process's connections and loops; ``run`` measures one phase into a ``Recorder``."""

    def __init__(self, workload: Workload, concurrency: int, timeout_s: float) -> None:
        self._workload = workload
        self._requests = workload.requests
        self._next = 0
        self._timeout = timeout_s
        self._workers = [_Worker() for _ in range(concurrency)]

    async def connect(self) -> None:
        """Open every worker's connection up front; a target that refuses is a ``LoadTestError``."""
        endpoint = self._workload.endpoint
        try:
            conns = await asyncio.gather(*(Connection.open(endpoint) for _ in self._workers))
        except OSError as exc:
            raise LoadTestError(
                f"cannot connect to http://{endpoint.authority} ({exc.strerror or exc}); is the "
                "server running and listening there?",
                field="target",
            ) from exc
        for worker, conn in zip(self._workers, conns, strict=True):
            worker.conn = conn

    async def close(self) -> None:
        """Close every connection."""
        for worker in self._workers:
            if worker.conn is not None:
                await worker.conn.close()
                worker.conn = None

    async def run(
        self, phase: Phase, recorder: Recorder, progress: Callable[[int, float], None] | None = None
    ) -> float:
        """Run one phase; returns its elapsed seconds (first send to last answer)."""
        start = perf_counter()
        watchdog = asyncio.create_task(self._watch(recorder, start, progress))
        try:
            if phase.rate is None:
                await self._closed(phase, recorder)
            else:
                await self._open(phase, recorder, start)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        return perf_counter() - start

    # --- the loops -----------------------------------------------------------------------

    async def _closed(self, phase: Phase, recorder: Recorder) -> None:
        end = perf_counter() + phase.duration_s if phase.duration_s is not None else None
        budget = [phase.requests] if phase.requests is not None else None

        async def loop(worker: _Worker) -> None:
            while True:
                if end is not None and perf_counter() >= end:
                    return
                if budget is not None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                recorder.sent += 1
                await self._one(worker, self._take(), perf_counter(), recorder)

        await asyncio.gather(*(loop(w) for w in self._workers))

    async def _open(self, phase: Phase, recorder: Recorder, start: float) -> None:
        interval = 1.0 / (phase.rate or 1.0)
        end = start + phase.duration_s if phase.duration_s is not None else None
        queue: asyncio.Queue[float | None] = asyncio.Queue()

        async def loop(worker: _Worker) -> None:
            while True:
                scheduled = await queue.get()
                if scheduled is None:
                    return
                recorder.sent += 1
                if perf_counter() - scheduled > LATE_S:
                    recorder.late += 1
                await self._one(worker, self._take(), scheduled, recorder)

        tasks = [asyncio.create_task(loop(w)) for w in self._workers]
        i = 0
        while True:
            due = start + i * interval
            if (phase.requests is not None and i >= phase.requests) or (
                end is not None and due >= end
            ):
                break
            wait = due - perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.put_nowait(due)
            i += 1
        for _ in tasks:
            queue.put_nowait(None)
        # Drain: answers still owed get the request timeout (plus a tick) to arrive.
        _, pending = await asyncio.wait(tasks, timeout=self._timeout + 2 * TICK_S)
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for worker in self._workers:
                if worker.deadline is not None:  # cancelled in flight
                    worker.deadline = None
                    self._drop(worker)
                    recorder.failure("timeout")
            while not queue.empty():
                if queue.get_nowait() is not None:
                    recorder.sent += 1
                    recorder.failure("not_sent")

    def _take(self) -> bytes:
        request = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        return request

    async def _one(
        self, worker: _Worker, request: bytes, scheduled: float, recorder: Recorder
    ) -> None:
        conn = worker.conn
        if conn is None or not conn.reusable:
            if conn is not None:
                conn.abort()
            try:
                conn = worker.conn = await Connection.open(self._workload.endpoint)
            except OSError:
                worker.conn = None
                recorder.failure("connect")
                await asyncio.sleep(RECONNECT_PAUSE_S)
                return
        worker.deadline = perf_counter() + self._timeout
        try:
            status, _ = await conn.exchange(request)
        except (asyncio.IncompleteReadError, OSError):
            self._drop(worker)
            recorder.failure("timeout" if worker.expired else "closed")
            return
        except (MalformedResponseError, ValueError, asyncio.LimitOverrunError):
            self._drop(worker)
            recorder.failure("protocol")
            return
        finally:
            worker.deadline = None
            worker.expired = False
        if 200 <= status < 300:
            recorder.success(perf_counter() - scheduled)
        else:
            recorder.failure(str(status))

    @staticmethod
    def _drop(worker: _Worker) -> None:
        if worker.conn is not None:
            worker.conn.abort()
            worker.conn = None

    async def _watch(
        self, recorder: Recorder, start: float, progress: Callable[[int, float], None] | None
    ) -> None:
        """Abort requests past their timeout; report progress."""
        while True:
            await asyncio.sleep(TICK_S)
            now = perf_counter()
            for worker in self._workers:
                if (
                    worker.deadline is not None
                    and now > worker.deadline
                    and worker.conn is not None
                ):
                    worker.expired = True
                    worker.conn.abort()
            if progress is not None:
                progress(recorder.completed, now - start)
