"""Run a load test: warm-up then measurement, in one or several client processes.

One client process (the default) runs its event loop (uvloop when installed) in the calling
process. With ``processes > 1`` each process gets an equal share of the concurrency, the rate and
the request count; they connect, wait for each other, then warm up and measure together, and
their HDR histograms are added into one result.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from typing import Any, TypeVar

from rtserve.errors import LoadTestError
from rtserve.loadgen.loops import Client, Phase, Progress, Workload
from rtserve.loadgen.stats import LoadResult, Recorder, merge

T = TypeVar("T")


@dataclass(frozen=True)
class LoadSpec:
    """How to load the target.

    ``rate`` set means an open loop at that many requests/s with at most ``concurrency``
    requests in flight; otherwise a closed loop of ``concurrency`` workers. The measurement runs
    for ``duration_s`` or until ``requests`` were sent (exactly one of them), after ``warmup_s``
    seconds of the same load whose answers are not counted.
    """

    concurrency: int = 16
    rate: float | None = None
    duration_s: float | None = 10.0
    requests: int | None = None
    warmup_s: float = 1.0
    timeout_s: float = 30.0
    processes: int = 1
    #: CPUs the client processes may run on (``os.sched_setaffinity``); ``None``: any.
    cpus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.duration_s is None) == (self.requests is None):
            raise LoadTestError(
                "give a duration or a request count (exactly one of them)", field="duration"
            )
        checks = [
            ("concurrency", self.concurrency, self.concurrency >= 1, "at least 1"),
            (
                "processes",
                self.processes,
                1 <= self.processes <= self.concurrency,
                f"between 1 and the concurrency ({self.concurrency})",
            ),
            ("rate", self.rate, self.rate is None or self.rate > 0, "positive (requests/s)"),
            (
                "duration",
                self.duration_s,
                self.duration_s is None or self.duration_s > 0,
                "positive (seconds)",
            ),
            ("requests", self.requests, self.requests is None or self.requests >= 1, "at least 1"),
            ("warmup", self.warmup_s, self.warmup_s >= 0, "zero or more seconds"),
            ("timeout", self.timeout_s, self.timeout_s > 0, "positive (seconds)"),
        ]
        for name, value, ok, rule in checks:
            if not ok:
                raise LoadTestError(f"{name}: {value} is not valid; it must be {rule}", field=name)

    @property
    def mode(self) -> str:
        """``"open"`` (fixed rate) or ``"closed"`` (fixed concurrency)."""
        return "closed" if self.rate is None else "open"

    def share(self, index: int) -> tuple[Phase, Phase]:
        """Client process ``index``'s warm-up and measured phases."""
        n = self.processes
        concurrency = _part(self.concurrency, n, index)
        rate = self.rate / n if self.rate is not None else None
        requests = _part(self.requests, n, index) if self.requests is not None else None
        warmup = Phase(concurrency, rate, duration_s=self.warmup_s)
        measure = Phase(concurrency, rate, duration_s=self.duration_s, requests=requests)
        return warmup, measure


def _part(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def run_load(workload: Workload, spec: LoadSpec, progress: Progress | None = None) -> LoadResult:
    """Warm up, measure, and return the merged result.

    Raises:
        LoadTestError: the target refuses connections, or the spec is not valid.
    """
    if spec.processes == 1:
        if spec.cpus is not None:
            _pin(spec.cpus)
        state, elapsed = _run_loop(_one_process(workload, spec, 0, progress))
        parts = [(Recorder.from_snapshot(state), elapsed)]
    else:
        parts = _many_processes(workload, spec, progress)
    return merge(parts, mode=spec.mode, concurrency=spec.concurrency, rate=spec.rate)


async def _one_process(
    workload: Workload,
    spec: LoadSpec,
    index: int,
    progress: Progress | None,
    ready: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], float]:
    warmup, measure = spec.share(index)
    client = Client(workload, warmup.concurrency, spec.timeout_s)
    await client.connect()
    try:
        if ready is not None:
            ready()
        if spec.warmup_s > 0:
            await client.run(warmup, Recorder(), _phase(progress, "warmup"))
        recorder = Recorder()
        elapsed = await client.run(measure, recorder, _phase(progress, "measure"))
    finally:
        await client.close()
    return recorder.snapshot(), elapsed


def _phase(progress: Progress | None, name: str) -> Callable[[int, float], None] | None:
    if progress is None:
        return None
    return lambda done, elapsed: progress(name, done, elapsed)


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (a faster client), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (it comes with uvicorn[standard])
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _pin(cpus: tuple[int, ...]) -> None:
    try:
        os.sched_setaffinity(0, set(cpus))
    except (OSError, ValueError) as exc:
        raise LoadTestError(
            f"cpus: cannot pin the load generator to CPUs {list(cpus)} ({exc}); this machine has "
            f"CPUs {sorted(os.sched_getaffinity(0))}",
            field="cpus",
        ) from exc


# --- several client processes -----------------------------------------------------------------


def _many_processes(
    workload: Workload, spec: LoadSpec, progress: Progress | None
) -> list[tuple[Recorder, float]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(spec.processes + 1)
    counters = [context.Value("q", 0) for _ in range(spec.processes)]
    phase = context.Value("i", 0)  # 0 warm-up, 1 measure (the furthest any child has got)
    pipes: list[Pipe] = []
    children = []
    for index in range(spec.processes):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(workload, spec, index, send, barrier, counters[index], phase),
            name=f"rtserve-bench-{index}",
            daemon=True,
        )
        child.start()
        send.close()
        pipes.append(receive)
        children.append(child)
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError as exc:  # a child failed to connect: its pipe says why
        _raise_child_error(pipes, exc)
    started = time.perf_counter()
    while any(child.is_alive() for child in children) and not all(p.poll() for p in pipes):
        time.sleep(0.1)
        if progress is not None:
            progress(
                "measure" if phase.value else "warmup",
                sum(c.value for c in counters),
                time.perf_counter() - started,
            )
    results = []
    for pipe in pipes:
        kind, payload = pipe.recv()
        if kind == "error":
            raise LoadTestError(payload, field="target")
        state, elapsed = payload
        results.append((Recorder.from_snapshot(state), elapsed))
    for child in children:
        child.join(timeout=5)
    return results


def _raise_child_error(pipes: list[Pipe], cause: BaseException) -> None:
    for pipe in pipes:
        try:
            kind, payload = pipe.recv() if pipe.poll(1.0) else ("", None)
        except EOFError:  # the child died without a word (e.g. it could not import __main__)
            continue
        if kind == "error":
            raise LoadTestError(str(payload), field="target") from cause
    raise LoadTestError(
        f"a load-generator process did not start ({cause!r})", field="processes"
    ) from cause


def _child(
    workload: Workload,
    spec: LoadSpec,
    index: int,
    pipe: Pipe,
    barrier: Barrier,
    counter: Synchronized[int],
    phase: Synchronized[int],
) -> None:
    def report(name: str, done: int, _elapsed: float) -> None:
        if name == "measure":
            phase.value = 1
            counter.value = done

    def ready() -> None:
        barrier.wait(timeout=60)

    try:
        if spec.cpus is not None:
            _pin(spec.cpus)
        result = _run_loop(_one_process(workload, spec, index, report, ready=ready))
    except LoadTestError as exc:
        barrier.abort()
        pipe.send(("error", exc.message))
        return
    pipe.send(("ok", result))
