"""A trivial ASGI app answering a constant: the floor of any server built on uvicorn.

The opt-in benchmark target ``uvicorn-hello`` serves it with the options ``rtserve serve`` uses
(httptools, uvloop, no access log, no server header), so that one run shows what the HTTP server
alone costs next to the bare asyncio floor and to rtserve.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

BODY = b'{"predictions":[{"label":0}]}'
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Read the body, answer ``BODY``."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": BODY})
