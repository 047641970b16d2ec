"""HTTP/1.1 over a raw socket, for tests that send what no HTTP client library would."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    """One parsed response; ``headers`` lower-cased (the last of repeated ones wins)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reader:
    """Reads responses one after another from a socket (they may arrive in one packet)."""

    sock: socket.socket
    buffer: bytes = b""
    closed: bool = field(default=False)

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def response(self) -> RawResponse | None:
        """The next response, or None when the server closed the connection first."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._more():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(status, headers, body)

    def at_eof(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` seconds (no more data)."""
        self.sock.settimeout(timeout)
        try:
            return not self.buffer and not self._more()
        except TimeoutError:
            return False


def connect(url_or_port: str | int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``http://127.0.0.1:PORT`` (or the port itself)."""
    port = url_or_port if isinstance(url_or_port, int) else int(url_or_port.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive unless the headers say otherwise)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def oversized_head(header_bytes: int, path: str = "/healthz") -> bytes:
    """A GET whose one header (``X-Big``) is ``header_bytes`` long, not yet terminated."""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".encode() + b"a" * header_bytes


class Sender(threading.Thread):
    """Sends ``payload`` in the background (a client that does not read while it sends);
    ``error`` is what stopped it (e.g. the server closed the connection), if anything."""

    def __init__(self, sock: socket.socket, payload: bytes, *, per_byte_s: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.payload = payload
        self.per_byte_s = per_byte_s
        self.error: OSError | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            if not self.per_byte_s:
                self.sock.sendall(self.payload)
                return
            for i in range(len(self.payload)):
                if self.stop.is_set():
                    return
                self.sock.sendall(self.payload[i : i + 1])
                time.sleep(self.per_byte_s)
        except OSError as exc:
            self.error = exc
