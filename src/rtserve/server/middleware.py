"""A request id on every request and response, and one access record.

``RequestTracker`` binds a ``RequestContext`` (request id, ``traceparent``) that the data plane
fills in, and at the end hands it to the ``AccessRecorder``: request metrics, the access-log line,
trace spans. ``RequestContextMiddleware`` applies it to every route Starlette serves; the
inference front (``rtserve.server.fastpath``) applies it itself.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import Token

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtserve.observability import context as request_context
from rtserve.observability.access import AccessRecorder, Finished
from rtserve.observability.context import RequestContext
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
    ``scope["state"]`` and bound as the ``RequestContext``; at the end, one access record (no
    bodies, no credentials, no input values). Shared by the middleware and the inference front."""

    def __init__(self, recorder: AccessRecorder) -> None:
        self.recorder = recorder

    def begin(self, scope: Scope) -> tuple[RequestContext, Token[RequestContext | None]]:
        """Bind the request's context; the caller echoes ``context.request_id`` and calls
        ``end`` exactly once."""
        started = time.perf_counter()
        request_id = ""
        traceparent: str | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id" and not request_id:
                candidate = value.decode("latin-1")
                if _VALID_ID.match(candidate):
                    request_id = candidate
            elif key == b"traceparent" and len(value) <= 64:
                candidate = value.decode("latin-1")
                if request_context.parse_traceparent(candidate):
                    traceparent = candidate
        if not request_id:
            request_id = _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        context = RequestContext(request_id, started, traceparent)
        token = request_context.bind(context)
        self.recorder.started()
        return context, token

    def end(
        self,
        scope: Scope,
        context: RequestContext,
        token: Token[RequestContext | None],
        status: int,
    ) -> None:
        """Unbind the context and record the request (never raises into the request)."""
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
            self.recorder.finished(context, end)
        except Exception:
            logger.exception("recording request %s failed", context.request_id)


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
        context, token = self.tracker.begin(scope)
        header = (b"x-request-id", context.request_id.encode("latin-1"))
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
            self.tracker.end(scope, context, token, status)
