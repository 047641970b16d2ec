"""Body reading and disconnect watching on raw ASGI ``receive`` callables."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from rtserve.errors import PayloadTooLargeError, RequestTimeoutError
from rtserve.events import RequestTrace
from rtserve.guard.limits import RequestLimits
from rtserve.server.request_guards import DisconnectWatch, receive_body

LIMITS = RequestLimits(max_body_bytes=100, body_timeout_s=0.1)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def messages(*items: dict[str, Any], then_wait: bool = True) -> Callable[[], Any]:
    """A ``receive`` that yields ``items``, then blocks (or reports a disconnect)."""
    queue = list(items)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_wait:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


def chunk(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


@run_async
async def test_a_body_in_one_message_is_read_without_a_timer() -> None:
    loop = asyncio.get_running_loop()
    timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
    body = await receive_body(messages(chunk(b'{"a": 1}')), LIMITS, None, "8")
    assert body == b'{"a": 1}'
    assert len(loop._scheduled) == timers_before  # type: ignore[attr-defined]


@run_async
async def test_a_streamed_body_is_joined_and_bounded() -> None:
    parts = messages(chunk(b"ab", True), chunk(b"cd", True), chunk(b"e"))
    assert await receive_body(parts, LIMITS, None, None) == b"abcde"
    with pytest.raises(PayloadTooLargeError):
        await receive_body(messages(chunk(b"x" * 60, True), chunk(b"x" * 60)), LIMITS, None, None)
    with pytest.raises(PayloadTooLargeError):  # the declared length alone is enough
        await receive_body(messages(chunk(b"")), LIMITS, None, "101")


@run_async
async def test_a_slow_sender_is_cut_off_and_a_vanished_one_is_reported() -> None:
    with pytest.raises(RequestTimeoutError):
        await receive_body(messages(chunk(b"ab", True)), LIMITS, None, None)
    with pytest.raises(ClientDisconnect):
        await receive_body(messages(chunk(b"ab", True), then_wait=False), LIMITS, None, None)


@run_async
async def test_work_that_never_waits_starts_no_watcher() -> None:
    trace = RequestTrace("r", 0.0)
    tasks_before = len(asyncio.all_tasks())

    async def inline() -> str:
        assert len(asyncio.all_tasks()) == tasks_before
        return "done"

    with DisconnectWatch(messages(then_wait=False), trace) as watch:
        assert trace.on_wait == watch.start  # the hook the batcher calls, on the trace itself
        assert await watch.run(inline()) == "done"
    assert trace.on_wait is None


@run_async
async def test_a_disconnect_while_the_work_waits_cancels_it() -> None:
    trace = RequestTrace("r", 0.0)
    cancelled = asyncio.Event()

    async def queued() -> str:
        trace.waiting()  # what the batcher does for a request that waits long
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    with pytest.raises(ClientDisconnect), DisconnectWatch(messages(then_wait=False), trace) as w:
        await w.run(queued())
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the test's own task carries on
