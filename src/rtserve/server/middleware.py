"""A request id on every request and response, one ``RequestTrace`` per request, one access record.

``RequestTracker`` makes the request's ``RequestTrace`` (request id, ``traceparent``), which the
transport passes explicitly to the data plane, binds the request id for log correlation, and at
the end hands the finished trace to the ``AccessRecorder``: request metrics, the access-log line,
trace spans. ``RequestContextMiddleware`` applies it to every route Starlette serves (and leaves
the trace in ``scope["state"]["trace"]`` for the inference routes Starlette serves); the
inference front (``rtserve.server.fastpath``) applies it itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from contextvars import Token

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtserve.events import RequestTrace, parse_traceparent
from rtserve.observability import context as request_context
from rtserve.observability.access import AccessRecorder, Finished
from rtserve.observability.ids import UniqueIds
from rtserve.server.routes import ROUTES

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: Endpoint name -> the protocol label of its route (the route table's tag).
_PROTOCOL_OF = {getattr(r.endpoint, "__name__", r.name): r.tag for r in ROUTES}
_UNROUTED = "none"
logger = logging.getLogger("rtserve.server")


#: A fresh request id per call (see ``rtserve.observability.ids``).
_new_request_id = UniqueIds()


class RequestTracker:
    """What every HTTP request gets: a sane ``X-Request-ID`` accepted or made, exposed in
    ``scope["state"]`` and bound for log correlation, and the request's ``RequestTrace``; at the
    end, one access record (no bodies, no credentials, no input values). Shared by the
    middleware and the inference front."""

    def __init__(self, recorder: AccessRecorder) -> None:
        self.recorder = recorder

    def begin(self, scope: Scope) -> tuple[RequestTrace, Token[str]]:
        """The request's trace, its id bound; the caller echoes ``trace.request_id``, passes the
        trace on to the data plane and calls ``end`` exactly once."""
        trace = self.trace(scope["headers"])
        scope.setdefault("state", {})["request_id"] = trace.request_id
        token = request_context.bind(trace.request_id)
        return trace, token

    def trace(self, headers: Iterable[tuple[bytes, bytes]]) -> RequestTrace:
        """``identify``, and the in-flight gauge counts the request."""
        trace = self.identify(headers)
        self.recorder.started()
        return trace

    def identify(self, headers: Iterable[tuple[bytes, bytes]]) -> RequestTrace:
        """A new request's trace from its raw headers: the client's ``X-Request-ID`` when sane
        (else a fresh id) and its valid ``traceparent`` (the caller counts it in flight)."""
        started = time.perf_counter()
        request_id = ""
        traceparent: str | None = None
        for key, value in headers:
            if key == b"x-request-id" and not request_id:
                request_id = _client_request_id(value)
            elif key == b"traceparent":
                traceparent = _valid_traceparent(value) or traceparent
        return RequestTrace(request_id or _new_request_id(), started, traceparent)

    def identify_distinct(self, headers: Mapping[bytes, bytes], started: float) -> RequestTrace:
        """``identify`` for a request no header name of which repeats, its headers given as a
        mapping (two look-ups instead of a loop), taken by the transport at ``started``."""
        value = headers.get(b"x-request-id")
        request_id = _client_request_id(value) if value is not None else ""
        value = headers.get(b"traceparent")
        traceparent = _valid_traceparent(value) if value is not None else None
        return RequestTrace(request_id or _new_request_id(), started, traceparent)

    def end(
        self,
        scope: Scope,
        trace: RequestTrace,
        token: Token[str],
        status: int,
    ) -> None:
        """Unbind the request id and record the request (never raises into the request)."""
        request_context.unbind(token)
        name = getattr(scope.get("endpoint"), "__name__", None)
        protocol = _PROTOCOL_OF.get(name, _UNROUTED) if name else _UNROUTED
        end = Finished(
            scope["method"],
            scope["path"],
            protocol,
            name if protocol != _UNROUTED and name else _UNROUTED,
            status,
            time.perf_counter(),
        )
        try:
            self.recorder.finished(trace, end)
        except Exception:
            logger.exception("recording request %s failed", trace.request_id)


class RequestContextMiddleware:
    """Pure-ASGI middleware giving every HTTP request what ``RequestTracker`` gives it, and the
    ``X-Request-ID`` header on its response."""

    def __init__(self, app: ASGIApp, *, tracker: RequestTracker) -> None:
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (HTTP requests are recorded, others pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace, token = self.tracker.begin(scope)
        scope["state"]["trace"] = trace  # for the inference routes, should Starlette serve them
        header = (b"x-request-id", trace.request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.tracker.end(scope, trace, token, status)


def _client_request_id(value: bytes) -> str:
    """The client's ``X-Request-ID`` when it is sane, else ""."""
    candidate = value.decode("latin-1")
    return candidate if _VALID_ID.match(candidate) else ""


def _valid_traceparent(value: bytes) -> str | None:
    """The ``traceparent`` header's value when it is valid W3C trace context, else None."""
    if len(value) > 64:
        return None
    candidate = value.decode("latin-1")
    return candidate if parse_traceparent(candidate) else None
