"""The long-wait watch: a request still waiting after ``LONG_WAIT_S`` is told (its trace's
``on_wait``) and gets its timeout timer; one timer per batcher, none for requests answered sooner."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from rtserve.engine.long_wait import LONG_WAIT_S, LongWaitWatch
from rtserve.events import RequestTrace


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


@dataclass(slots=True)
class Waiter:
    """A request as the batcher keeps it, counting the times its trace said it waits."""

    submitted: float
    future: asyncio.Future[Any]
    timeout: float | None = None
    told: list[str] = field(default_factory=list)
    trace: RequestTrace | None = None
    timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.trace = RequestTrace("r", self.submitted, on_wait=lambda: self.told.append("told"))


def waiter(age: float = 0.0, timeout: float | None = None) -> Waiter:
    """A waiter submitted ``age`` seconds ago."""
    loop = asyncio.get_running_loop()
    return Waiter(time.perf_counter() - age, loop.create_future(), timeout)


def queue(watch_deque: deque[Any], watch: LongWaitWatch, *waiters: Waiter) -> None:
    """What the batcher does on ``submit``: append, then watch."""
    for one in waiters:
        watch_deque.append(one)
        watch.watch(one, asyncio.get_running_loop())


@run_async
async def test_a_request_answered_before_the_long_wait_is_never_told_and_gets_no_timer() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    quick = waiter(timeout=10.0)
    queue(waiting, watch, quick)
    await asyncio.sleep(LONG_WAIT_S / 5)
    quick.future.set_result("answer")
    await asyncio.sleep(2 * LONG_WAIT_S)
    assert quick.told == []
    assert quick.timer is None


@run_async
async def test_a_request_still_waiting_is_told_once_and_times_out_on_time() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    slow = waiter(timeout=3 * LONG_WAIT_S)
    queue(waiting, watch, slow)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await slow.future
    assert 3 * LONG_WAIT_S <= time.perf_counter() - started < 5 * LONG_WAIT_S
    await asyncio.sleep(LONG_WAIT_S)  # later checks leave it alone
    assert slow.told == ["told"]


@run_async
async def test_a_timeout_shorter_than_the_long_wait_gets_its_timer_at_once() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    hurried = waiter(timeout=LONG_WAIT_S / 5)
    queue(waiting, watch, hurried)
    assert hurried.timer is not None
    with pytest.raises(TimeoutError):
        await hurried.future
    assert hurried.told == []  # timed out before anyone had to watch for a disconnect


@run_async
async def test_a_request_past_its_timeout_at_the_check_times_out_at_once() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    stale = waiter(age=10 * LONG_WAIT_S, timeout=2 * LONG_WAIT_S)
    queue(waiting, watch, stale)
    watch.check()
    assert isinstance(stale.future.exception(), TimeoutError)
    assert stale.timer is None
    assert stale.told == []


@run_async
async def test_requests_removed_from_the_head_hide_no_later_one_and_none_is_told_twice() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    old = [waiter(age=2 * LONG_WAIT_S) for _ in range(3)]
    queue(waiting, watch, *old)
    watch.check()
    assert [w.told for w in old] == [["told"]] * 3
    waiting.popleft()  # answered: the batcher removes them from the head ...
    waiting.popleft()
    watch.removed(2)  # ... and says so
    late = waiter(age=2 * LONG_WAIT_S)
    queue(waiting, watch, late)
    watch.check()
    assert late.told == ["told"]
    assert old[2].told == ["told"]


@run_async
async def test_a_request_put_at_the_head_behind_told_ones_is_told_at_once() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    behind = [waiter(age=2 * LONG_WAIT_S) for _ in range(2)]
    queue(waiting, watch, *behind)
    watch.check()
    first = waiter(age=3 * LONG_WAIT_S)  # submitted before them (the batcher's inline path)
    waiting.appendleft(first)
    watch.prepended(first)
    assert first.told == ["told"]
    watch.check()
    assert [w.told for w in (first, *behind)] == [["told"]] * 3


@run_async
async def test_one_timer_watches_every_waiting_request() -> None:
    waiting: deque[Waiter] = deque()
    watch = LongWaitWatch(waiting)
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_later = loop.call_later

    def counting(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timers.append(delay)
        return call_later(delay, callback, *args)

    loop.call_later = counting  # type: ignore[method-assign]
    try:
        many = [waiter(timeout=10.0) for _ in range(200)]
        queue(waiting, watch, *many)
        assert len(timers) == 1  # one check, not 200 timers
        await asyncio.sleep(LONG_WAIT_S * 1.5)
        assert all(w.told == ["told"] for w in many)
    finally:
        loop.call_later = call_later  # type: ignore[method-assign]
