"""CPU per request, per thread group, of a server's whole process tree during one measured point.

``/proc/PID/task/TID/stat`` holds each thread's user and system CPU time (clock ticks, 10 ms);
reading every thread of the server's process tree when the measured phase has begun and again
when it has ended gives each thread's CPU over a window in which a known number of requests
completed. Threads are put in groups, so that a regression shows where it is:

- rtserve (which names its threads to the OS, ``rtserve.observability.threads``): ``event loop``
  (each process's main thread: sockets, HTTP, guards, decoding, validation, batching, inline
  predictions, encoding), ``runtime`` (``rt-<model>``: batches run off the loop), ``observers``
  (``rtserve-*``: metrics, drift, decision log hand-off, tracing, refresh), ``decision writer``
  (the decision log's child process, ``rtserve-writer``) and ``other`` (anything else: ONNX
  Runtime's or numpy's own pools, asyncio's executor);
- any other server: ``<process name>/<thread name>``, digits dropped (``mosec/tokio-rt-worker``,
  ``python/python``): whatever the OS calls them, since their threads are theirs to name.

A thread that starts within the window counts from zero; one that ends within it is lost (its
CPU is not counted), which the benchmark's servers do not do while serving.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_DIGITS = re.compile(r"[-_.]?\d+$")


@dataclass(frozen=True)
class ThreadTime:
    """One thread's name, its process's name, whether it is that process's main thread, and
    its CPU seconds so far."""

    process: str
    name: str
    main: bool
    cpu_s: float


def _stat(path: Path) -> tuple[str, float] | None:
    try:
        text = path.read_text()
    except OSError:  # the thread (or process) ended between listing and reading
        return None
    # "TID (comm) S ppid ...": comm may hold spaces and parentheses, so split at the last ')'
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return name, (utime + stime) * _TICK_S


def snapshot(root_pid: int) -> dict[int, ThreadTime]:
    """Every thread of the process tree under ``root_pid`` (included), by thread id."""
    try:
        root = psutil.Process(root_pid)
        pids = [root.pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.Error:
        return {}
    out: dict[int, ThreadTime] = {}
    for pid in pids:
        process = _stat(Path(f"/proc/{pid}/stat"))
        if process is None:
            continue
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                thread = _stat(task / "stat")
                if thread is not None:
                    tid = int(task.name)
                    out[tid] = ThreadTime(process[0], thread[0], tid == pid, thread[1])
    return out


def group_of(thread: ThreadTime, kind: str) -> str:
    """The thread group a thread's CPU is reported under (module docstring)."""
    if kind == "rtserve":
        if thread.name == "rtserve-writer":  # the decision log's child process
            return "decision writer"
        if thread.main:
            return "event loop"
        if thread.name.startswith("rt-"):
            return "runtime"
        if thread.name.startswith("rtserve-"):
            return "observers"
        return "other"
    return f"{thread.process}/{_DIGITS.sub('', thread.name)}"


def per_request(
    before: dict[int, ThreadTime],
    after: dict[int, ThreadTime],
    requests: int,
    window_s: float,
    kind: str,
) -> dict[str, Any]:
    """µs of CPU per request per thread group (and in total) between two snapshots, and how
    many cores each group kept busy on average (1.0: one core all the time)."""
    groups: dict[str, float] = {}
    for tid, thread in after.items():
        start = before.get(tid)
        used = thread.cpu_s - (start.cpu_s if start is not None else 0.0)
        group = group_of(thread, kind)
        groups[group] = groups.get(group, 0.0) + max(used, 0.0)
    total = sum(groups.values())
    ordered = sorted(groups.items(), key=lambda item: -item[1])
    return {
        "requests": requests,
        "window_s": round(window_s, 3),
        "tick_s": _TICK_S,
        "total_us": round(total / requests * 1e6, 1) if requests else None,
        "us_per_request": {
            g: round(s / requests * 1e6, 1) if requests else None for g, s in ordered
        },
        "cores": {g: round(s / window_s, 3) if window_s > 0 else None for g, s in ordered},
    }


class CpuProbe:
    """Snapshots a server's threads when the measured phase begins and after it ends.

    ``progress`` is ``run_load``'s progress callback: its first call in the ``measure`` phase
    (within ~50 ms of the phase's start) takes the first snapshot and notes how many requests
    had completed by then; ``finish`` takes the second once ``run_load`` returned.
    """

    def __init__(self, pid: int, kind: str) -> None:
        self.pid = pid
        self.kind = kind
        self._before: dict[int, ThreadTime] | None = None
        self._done_before = 0
        self._started = 0.0

    def progress(self, phase: str, completed: int, elapsed_s: float) -> None:
        if phase == "measure" and self._before is None:
            self._before = snapshot(self.pid)
            self._done_before = completed
            self._started = time.perf_counter()

    def finish(self, completed: int) -> dict[str, Any] | None:
        """The figures for the window, given the requests completed in the whole phase."""
        if self._before is None:  # the phase ended before its first progress tick
            return None
        after = snapshot(self.pid)
        window = time.perf_counter() - self._started
        return per_request(self._before, after, completed - self._done_before, window, self.kind)
