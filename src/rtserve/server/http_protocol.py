"""uvicorn's httptools protocol with a bounded request head: in size (431) and in time (408).

uvicorn's httptools protocol sets no limit of its own on a request's headers, and httptools
appends to a header value for as long as it keeps arriving: one 96 MB header held the event loop
(every other request with it) for 16 s. ``BoundedHttpProtocol`` counts the bytes of each request
head (request line and headers) as they arrive and never hands the parser more than
``HeaderLimits.max_bytes`` of one head; a head that has not ended within them is answered 431.
A timer started at connect, and at the first read of every later head, answers 408 when the head
is not complete within ``HeaderLimits.timeout_s`` (a connection that sent nothing is just
closed): a client trickling a header byte per second no longer holds a connection for ever.

Once a head is complete, its body and the app's answer cost one attribute check per read. A head
that begins in the same read as the end of the request before it (HTTP pipelining) is not counted
as it arrives within that read; it is measured when complete instead, so no head beyond the limit
is ever served.

Every refusal (and uvicorn's own 400 for bytes that are not HTTP) is the usual JSON error body
(``error_handlers.raw_error_response``). The connection then stops reading requests: while an
earlier pipelined request is still being answered, that answer goes out first (with
``Connection: close``) and the refused one gets none; otherwise the refusal is written, the write
side shut, and what the client still sends is read and dropped for up to ``LINGER_S`` before the
close, so a client still sending its head reads the answer instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from rtserve.errors import (
    HeaderTooLargeError,
    MalformedRequestError,
    RequestTimeoutError,
    RtserveError,
)
from rtserve.server.error_handlers import raw_error_response
from rtserve.server.lane import LaneRequest, RecordsLane
from rtserve.settings import LimitSettings

logger = logging.getLogger("rtserve.server")
#: Seconds a refused connection is still drained (not read for requests) before it is closed.
LINGER_S = 2.0
_DEFAULTS = LimitSettings()


@dataclass(frozen=True)
class HeaderLimits:
    """Bounds of one request head: its size (request line plus headers) and time to arrive."""

    max_bytes: int = _DEFAULTS.max_header_bytes
    timeout_s: float = _DEFAULTS.header_timeout_s

    @classmethod
    def from_settings(cls, limits: LimitSettings) -> HeaderLimits:
        """``settings.limits.max_header_bytes`` and ``header_timeout_s``."""
        return cls(max_bytes=limits.max_header_bytes, timeout_s=limits.header_timeout_s)


def http_protocol(limits: HeaderLimits) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` option for a server whose request heads are bounded by ``limits``.

    A ``functools.partial`` of a module-level class: uvicorn calls it as it calls a protocol
    class, and it pickles, so the workers of ``--workers N`` (which receive the ``Config`` by
    pickle) get the same limits.
    """
    return cast("type[asyncio.Protocol]", functools.partial(BoundedHttpProtocol, limits=limits))


# uvicorn's methods, called directly: ``super()`` costs more per request on Python 3.11.
_feed = HttpToolsProtocol.data_received
_begin = HttpToolsProtocol.on_message_begin
_headers_complete = HttpToolsProtocol.on_headers_complete
_body = HttpToolsProtocol.on_body
_message_complete = HttpToolsProtocol.on_message_complete


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """What ``client_host``'s proxy-headers middleware calls: the scope is all it needs."""


async def _no_receive() -> Any:
    raise RuntimeError("client_host's scope has no body")


async def _no_send(message: Any) -> None:
    raise RuntimeError("client_host's scope sends nothing")


class _RefusedError(Exception):
    """Raised inside a parser callback: stops httptools from parsing a refused request."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that bounds each request head in size and time (module docstring).

    The head state: ``_in_head`` is true while the next bytes belong to a request head (from
    connect, and from the end of each request to the end of the next one's headers);
    ``_head_used`` counts the head's bytes handed to the parser so far.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeaderLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits = limits if limits is not None else HeaderLimits()
        self._max_head = limits.max_bytes
        self._in_head = True
        self._head_used = 0
        #: A head beginning now begins at a counted byte (the first of a read in head state).
        self._counted_start = False
        #: The current head began inside a read that was not counted: measure it when complete.
        self._measure_at_end = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: RtserveError | None = None
        self._lane: RecordsLane | None = None
        #: When the lane last answered, and the one timer that closes the connection once it
        #: has been idle for ``timeout_keep_alive`` since (``lane_answered``).
        self._answered_at = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        #: uvicorn's proxy-headers middleware over no app, when the server honours proxies.
        self._proxy: ProxyHeadersMiddleware | None = None

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, and the first head's timer: it runs from connect. The app's records lane
        (``RtserveApp.records_lane``) takes this connection's records predict requests."""
        super().connection_made(transport)
        self._arm_head_timer()
        app: object = self.app
        if isinstance(app, ProxyHeadersMiddleware):  # server.trusted_proxies: see client_host
            self._proxy = ProxyHeadersMiddleware(_no_app)
            self._proxy.trusted_hosts = app.trusted_hosts
            app = app.app
        lane_of = getattr(app, "records_lane", None)
        if lane_of is not None and self.limit_concurrency is None:
            self._lane = lane_of()

    async def client_host(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The client address of a request with these raw headers, as the ASGI app sees it:
        behind a trusted proxy, the one uvicorn's proxy-headers middleware (run here on a
        scope of its own) takes from the proxy's headers; otherwise the peer."""
        client = self.client
        if self._proxy is not None:
            scope: dict[str, Any] = {"type": "http", "client": client, "headers": headers}
            await self._proxy(scope, _no_receive, _no_send)  # type: ignore[arg-type]
            client = scope["client"]
        return str(client[0]) if client else None

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, without a timer left behind."""
        self._cancel_head_timer()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    def lane_answered(self) -> None:
        """uvicorn's ``on_response_complete`` for an answer the lane wrote, but for its
        keep-alive timer: not one timer per answer (armed, then cancelled by the next request)
        but one per connection, which closes it only once it has been idle long enough."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        self._answered_at = self.loop.time()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._close_if_idle)

    def _close_if_idle(self) -> None:
        """Close the connection if nothing happened on it for ``timeout_keep_alive`` since the
        lane's last answer; look again when it could be. A request under way (its head, its
        body or its answer) stops the watch: its own answer starts the next one (the lane's
        here, uvicorn's keep-alive timer for any other)."""
        self._idle_timer = None
        cycle: object = self.cycle
        if (
            self.transport.is_closing()
            or type(cycle) is not LaneRequest  # uvicorn answered since: its timer watches
            or not cycle.response_complete
            or self._head_used
        ):
            return
        left = self._answered_at + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._close_if_idle)
        else:
            self.timeout_keep_alive_handler()

    def data_received(self, data: bytes) -> None:
        """Count and bound a head's bytes; anything else goes to uvicorn untouched."""
        if not self._in_head:  # a body, or bytes while the app answers
            _feed(self, data)
        else:
            used = self._head_used
            if len(data) <= self._max_head - used and self._refusal is None:  # the common case
                self._counted_start = not used
                self._head_used = used + len(data)
                _feed(self, data)
            else:
                self._receive_head(data)
        if self._in_head and self._head_used and self._head_timer is None:
            self._arm_head_timer()  # a head began in this read and is not complete
        else:
            cycle: object = self.cycle
            if type(cycle) is LaneRequest and cycle.more_body:
                self._hand_to_asgi(cycle)

    def _hand_to_asgi(self, request: LaneRequest) -> None:
        """A lane request whose body did not come with its head is served the ASGI way, as if
        the lane had never seen it: admission before the body, the body's read timeout."""
        self._begin_scope()
        scope = self.scope
        scope["method"] = "POST"
        scope["path"] = request.path
        scope["raw_path"] = request.path.encode("ascii")
        scope["query_string"] = b""
        cycle = RequestResponseCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=request.keep_alive,
            on_response=self.on_response_complete,
        )
        if request.body:  # what came with the head: the app's first receive() returns it
            cycle.body = bytearray(request.body)
            cycle.message_event.set()
        self.cycle = cycle
        self._start_asgi_task(cycle, self.app)

    def _receive_head(self, data: bytes) -> None:
        """``data_received`` for a read that may take the head past its limit, or a refused
        connection's read (dropped)."""
        while self._refusal is None:
            used = self._head_used
            room = self._max_head - used
            self._counted_start = used == 0
            if len(data) <= room:
                self._head_used = used + len(data)
                _feed(self, data)
                return
            # More than the head may still take: the parser gets that much first.
            view = memoryview(data)
            self._head_used = self._max_head
            _feed(self, cast("bytes", view[:room]))  # httptools reads any buffer
            if self._in_head and self._head_used >= self._max_head:  # still the same head
                self._refuse(self._too_large(f"more than {self._max_head}"))
                return
            data = cast("bytes", view[room:])
            if not self._in_head:  # the head ended: the rest is its body (and what follows)
                _feed(self, data)
                return
            # The request ended within those bytes; the rest starts (or continues) the next head.

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        """uvicorn's; a head beginning after a request's end within one read is measured later."""
        if self._counted_start:
            self._counted_start = False
        else:
            self._measure_at_end = True
            self._head_used = 1  # begun: its later reads are counted and its timer runs
        if self._lane is None:
            _begin(self)
        else:  # the ASGI scope waits until uvicorn takes the request (most go to the lane)
            self.url = b""
            self.expect_100_continue = False
            self.headers = []

    def _begin_scope(self) -> None:
        """uvicorn's scope of the request whose head was just parsed (``on_message_begin``'s,
        with the URL and headers already read)."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        _begin(self)
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers

    def on_headers_complete(self) -> None:
        """The head is complete: stop counting and timing it, then uvicorn starts the request."""
        self._in_head = False
        if self._head_timer is not None:
            self._cancel_head_timer()
        if self._measure_at_end:
            self._measure_at_end = False
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self._max_head:
                self._refusal = self._too_large(str(size))
                raise _RefusedError  # httptools stops; uvicorn calls send_400_response
        lane = self._lane
        if lane is not None and (self.cycle is None or self.cycle.response_complete):
            request = lane.take(self)
            if request is not None:  # it stands in uvicorn's cycle slot until answered
                self.cycle = request  # type: ignore[assignment]
                return
        if lane is not None:
            self._begin_scope()
        _headers_complete(self)

    def on_body(self, body: bytes) -> None:
        """uvicorn's, or a lane request's body grows (it takes no upgrade: ``RecordsLane.take``)."""
        cycle: object = self.cycle
        if type(cycle) is LaneRequest:
            cycle.body += body
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
        else:
            _body(self, body)

    def on_message_complete(self) -> None:
        """uvicorn's, or the lane's request goes to the lane; the next bytes are the next
        request's head."""
        cycle: object = self.cycle
        if type(cycle) is LaneRequest:
            if self._lane is not None:
                self._lane.arrived(cycle)
        else:
            _message_complete(self)
        self._in_head = True
        self._head_used = 0

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes httptools cannot parse, as a JSON error (or a refusal
        raised in a callback)."""
        refusal = self._refusal or MalformedRequestError(
            "the request is not valid HTTP/1.1 (a malformed request line or header); send a "
            "well-formed request"
        )
        self._refusal = None
        self._refuse(refusal)

    def _unsupported_upgrade_warning(self) -> None:
        """uvicorn warns twice per ``Upgrade`` request (wrongly blaming a missing WebSocket
        library); with WebSockets off such a request is simply answered as plain HTTP."""
        logger.debug("Upgrade request from %s answered as plain HTTP", self.client)

    # --- refusals ---------------------------------------------------------------------------

    def _too_large(self, size: str) -> HeaderTooLargeError:
        return HeaderTooLargeError(
            f"headers: the request line and headers take {size} bytes, more than the limit of "
            f"{self._max_head}; send fewer or shorter headers (large data belongs in the body)",
            field="headers",
        )

    def _refuse(self, error: RtserveError) -> None:
        """Answer ``error`` (after any earlier request still being answered) and stop reading
        requests from this connection."""
        self._refusal = error
        self._in_head = True  # later reads go to _receive_head, which drops them
        self._head_used = 0
        self._cancel_head_timer()
        transport = self.transport
        if transport.is_closing():
            return
        logger.info(
            "refused a request from %s before reading it: %s",
            self.client[0] if self.client else "?",
            error.code,
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # HTTP/1.1 answers in order: the earlier answer goes first and closes the connection.
            cycle.keep_alive = False
            self.flow.pause_reading()
            return
        transport.write(raw_error_response(error, self.server_state.default_headers))
        if transport.can_write_eof():
            transport.write_eof()  # the answer is complete; keep reading (and dropping) a while
            self.flow.resume_reading()
            self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    # --- head timer -------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refusal is not None or self.transport.is_closing():
            return
        if not self._head_used:  # the connect timer, and not one byte arrived: nobody to answer
            self.transport.close()
            return
        self._refuse(
            RequestTimeoutError(
                f"headers: the request line and headers did not arrive within "
                f"{self.limits.timeout_s:g}s; send the whole request head at once",
                field="headers",
            )
        )
