"""A lean HTTP/1.1 keep-alive client: pre-encoded requests out, status and body back.

The load generator must never be the bottleneck, so a request is bytes built once before the run
(``encode_request``) and a response is read with two buffered reads: the head up to the blank line,
then exactly ``Content-Length`` bytes (chunked bodies and bodies delimited by closing the connection
are read too, for servers that send them). Nothing else of the response is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from rtserve.errors import LoadTestError

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_CLOSE = b"\r\nconnection: close"
#: Largest response head read before the response is called malformed.
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: host, port and the ``Host`` header value."""

    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """``http://host:port[/...]`` to an endpoint (HTTPS is not supported: loopback only)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise LoadTestError(
                f"{url!r} is not an http:// URL; give the server's base URL, e.g. "
                "http://127.0.0.1:8080 (TLS is not supported by the load generator)",
                field="target",
            )
        return cls(parts.hostname, parts.port or 80)

    @property
    def authority(self) -> str:
        """The ``Host`` header value."""
        return f"{self.host}:{self.port}"


def encode_request(
    endpoint: Endpoint,
    path: str,
    body: bytes | None = None,
    *,
    method: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> bytes:
    """One complete HTTP/1.1 keep-alive request as bytes (POST when there is a body)."""
    verb = method or ("POST" if body is not None else "GET")
    lines = [f"{verb} {path} HTTP/1.1", f"host: {endpoint.authority}", "user-agent: rtserve-bench"]
    if body is not None:
        lines += [f"content-type: {content_type}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class MalformedResponseError(Exception):
    """The peer sent bytes that are not an HTTP/1.1 response; counted as a ``protocol`` error, never
    raised out of the load generator."""


class Connection:
    """One keep-alive TCP connection that exchanges one request for one response at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        #: False once the peer asked to close, or the connection broke; open a new one then.
        self.reusable = True

    @classmethod
    async def open(cls, endpoint: Endpoint) -> Connection:
        """Connect (TCP_NODELAY is set by asyncio for TCP streams)."""
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, limit=MAX_HEAD)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` and read its response: ``(status, body)``.

        Raises:
            MalformedResponseError: the response is not HTTP/1.1.
            OSError, asyncio.IncompleteReadError: the connection broke.
        """
        self._writer.write(request)
        reader = self._reader
        try:
            head = await reader.readuntil(_HEAD_END)
        except asyncio.LimitOverrunError as exc:
            raise MalformedResponseError(f"response head longer than {MAX_HEAD} bytes") from exc
        if not head.startswith(b"HTTP/1."):
            raise MalformedResponseError(f"not an HTTP/1.x status line: {head[:40]!r}")
        try:
            status = int(head[9:12])
        except ValueError as exc:
            raise MalformedResponseError(f"bad status line: {head[:40]!r}") from exc
        lower = head.lower()
        at = lower.find(_CONTENT_LENGTH)
        if at >= 0:
            start = at + len(_CONTENT_LENGTH)
            length = int(lower[start : lower.find(b"\r\n", start)])
            body = await reader.readexactly(length) if length else b""
        elif lower.find(_CHUNKED) >= 0:
            body = await self._read_chunked()
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # the body ends when the server closes the connection
            body = await reader.read()
            self.reusable = False
        if lower.find(_CLOSE) >= 0:
            self.reusable = False
        return status, body

    async def _read_chunked(self) -> bytes:
        reader = self._reader
        parts: list[bytes] = []
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError as exc:
                raise MalformedResponseError(f"bad chunk size line: {line[:40]!r}") from exc
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def abort(self) -> None:
        """Drop the connection at once (a request that ran past its timeout)."""
        self.reusable = False
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        """Close politely."""
        self.reusable = False
        self._writer.close()
        with contextlib.suppress(OSError):  # the peer may already have reset it
            await self._writer.wait_closed()
