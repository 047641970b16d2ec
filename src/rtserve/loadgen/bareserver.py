"""A bare HTTP/1.1 server that answers every request with one constant JSON document.

It is the floor any Python HTTP service can reach on this machine and the ceiling of the load
generator (``rtserve bench --self-test``): whatever a real server measures, this one does nothing
but parse the request head, skip the body and write fixed bytes. Run it with
``python -m rtserve.loadgen.bareserver --port 0``; it prints ``listening on http://HOST:PORT``
once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import cast

BODY = b'{"predictions":[{"label":0}]}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
_CONTENT_LENGTH = b"\r\ncontent-length:"


class _ConstantProtocol(asyncio.Protocol):
    """Answers each complete request (head + Content-Length body) with ``RESPONSE``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's transport (uvloop's does not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(_CONTENT_LENGTH)
            length = 0
            if at >= 0:
                start = at + len(_CONTENT_LENGTH)
                stop = head.find(b"\r\n", start)
                length = int(head[start : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            if self._transport is not None:
                self._transport.write(RESPONSE)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_ConstantProtocol, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening on http://{host}:{bound}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m rtserve.loadgen.bareserver [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    coro = serve(args.host, args.port)
    try:
        import uvloop
    except ImportError:  # uvloop is optional (it comes with uvicorn[standard])
        asyncio.run(coro)
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(coro)


if __name__ == "__main__":
    main()
