"""The long-wait watch: what happens to a request that waits long for its batch's answer.

Most requests are answered within a few milliseconds. One still waiting ``LONG_WAIT_S`` after it
was submitted (queued, or in a batch that runs long) is told so through its trace's ``on_wait``
(its transport then watches for a client disconnect) and gets its timeout timer. One timer per
batcher checks the batcher's deque of waiting requests, at most four times per such wait, rather
than one timer per request: a request answered sooner never creates and cancels one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from itertools import islice
from typing import Any, Protocol

from rtserve.events import RequestTrace

#: A request still waiting this long (seconds) is told so and gets its timeout timer.
LONG_WAIT_S = 0.05


class Waiter(Protocol):
    """A request waiting for its answer, as the batcher keeps it."""

    @property
    def submitted(self) -> float:
        """``time.perf_counter()`` when it was submitted."""

    @property
    def future(self) -> asyncio.Future[Any]:
        """Its answer, to come."""

    @property
    def timeout(self) -> float | None:
        """Seconds it may wait in all; None: no limit."""

    @property
    def trace(self) -> RequestTrace | None:
        """The request's trace, whose ``on_wait`` is called once it waits long."""

    timer: asyncio.TimerHandle | None


def time_out(future: asyncio.Future[Any]) -> None:
    """Fail a waiting request with ``TimeoutError`` (a queued one is then skipped, a running
    batch's answer to it dropped)."""
    if not future.done():
        future.set_exception(TimeoutError())


class LongWaitWatch:
    """Watches a batcher's ``waiting`` deque: every request from submission until the batcher
    removes it, in submission order (the batcher removes requests from the head only).

    The first ``told`` requests of the deque have been checked already; the batcher reports how
    many it removed from the head (``removed``) and a request it put at the head (``prepended``).
    """

    def __init__(self, waiting: deque[Any]) -> None:
        self._waiting: deque[Waiter] = waiting
        self.told = 0
        self._check: asyncio.TimerHandle | None = None

    def watch(self, waiter: Waiter, loop: asyncio.AbstractEventLoop) -> None:
        """``waiter`` was just added to the deque: have it checked once it has waited
        ``LONG_WAIT_S`` (a timeout shorter than that gets its timer at once)."""
        if waiter.timeout is not None and waiter.timeout < LONG_WAIT_S:
            waiter.timer = loop.call_later(waiter.timeout, time_out, waiter.future)
        if self._check is None:
            self._check = loop.call_later(LONG_WAIT_S, self.check)

    def removed(self, count: int) -> None:
        """The batcher removed ``count`` requests from the head of the deque."""
        self.told = max(self.told - count, 0)

    def prepended(self, waiter: Waiter) -> None:
        """The batcher put ``waiter`` at the head of the deque (it was submitted before all the
        others). If requests behind it were checked already, it is due too: check it now."""
        if self.told:
            self.told += 1
            self._tell(waiter, time.perf_counter())

    def check(self) -> None:
        """Tell the requests submitted ``LONG_WAIT_S`` ago or earlier and still waiting; run
        again when the next one is due, but not sooner than a quarter of the wait."""
        self._check = None
        now = time.perf_counter()
        waiting, told = self._waiting, self.told
        for waiter in islice(waiting, told, None):
            if waiter.submitted + LONG_WAIT_S > now:
                break
            told += 1
            self._tell(waiter, now)
        self.told = told
        if len(waiting) > told:
            due = max(waiting[told].submitted + LONG_WAIT_S - now, LONG_WAIT_S / 4)
            self._check = asyncio.get_running_loop().call_later(due, self.check)

    @staticmethod
    def _tell(waiter: Waiter, now: float) -> None:
        """Start ``waiter``'s timeout timer and call its trace's ``on_wait`` (if still waiting)."""
        future = waiter.future
        if future.done():
            return
        if waiter.timer is None and waiter.timeout is not None:
            left = waiter.timeout - (now - waiter.submitted)
            if left <= 0:
                time_out(future)
                return
            waiter.timer = future.get_loop().call_later(left, time_out, future)
        if waiter.trace is not None:
            waiter.trace.waiting()
