"""The inference routes as raw ASGI: the hot path of every prediction.

Starlette's middleware stack, router, ``Request`` objects and exception middleware cost more per
request than a small model's prediction. ``InferenceRouter`` serves the route table's
``InferenceRoute`` entries ahead of all of them (``RtserveApp`` hands it the requests it
recognises), with the same guards as every other route (``admit``, bounded body, disconnect
watch), the same error mapping (``error_handlers``) and the same request id, ``RequestTrace`` and
access record (``RequestTracker``). The trace travels as an argument: into the ``InferenceCall``,
the data plane and the batcher, with the disconnect watch's hook on it (``on_wait``). A request
answered inline creates no task and no timer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rtserve.engine.dataplane import DataPlane, Reply
from rtserve.errors import RtserveError
from rtserve.events import RequestTrace
from rtserve.server.endpoints import ACCEPTED_TYPES, JSON, InferenceCall, check_content_type
from rtserve.server.error_handlers import handle_rtserve_error, handle_unexpected
from rtserve.server.middleware import RequestTracker
from rtserve.server.request_guards import (
    CLIENT_CLOSED,
    DisconnectWatch,
    RequestGuards,
    admit,
    rate_headers,
    receive_body,
)
from rtserve.server.routes import InferenceRoute

_PARAMETER = re.compile(r"\{(\w+)\}")


def _pattern(path: str) -> re.Pattern[str]:
    """``/v2/models/{name}/infer`` -> a regex with one named group per parameter."""
    parts = _PARAMETER.split(path)  # literal, name, literal, name, ..., literal
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(regex)


class InferenceRouter:
    """The inference routes as raw ASGI.

    ``front`` serves a request ``match`` recognised ahead of Starlette's middleware stack, doing
    itself what ``RequestContextMiddleware`` does for every other route (``RequestTracker``).
    ``serve`` is the route itself; Starlette's router calls it too (``starlette_endpoint``), so
    a request the front does not take gets the same answer. It sets ``scope["endpoint"]`` as
    Starlette's router would, so the access record labels the request with its protocol.
    """

    def __init__(
        self,
        *,
        routes: Sequence[InferenceRoute],
        guards: RequestGuards,
        plane: DataPlane,
        tracker: RequestTracker,
    ) -> None:
        self.guards = guards
        self.plane = plane
        self.tracker = tracker
        self._routes = [(_pattern(route.path), route) for route in routes]
        self._prefixes = tuple({route.path.split("{", 1)[0] for route in routes})

    def match(self, scope: Scope) -> tuple[InferenceRoute, dict[str, str]] | None:
        """The inference route of an HTTP request and its path parameters, if it is one."""
        if scope["method"] != "POST":
            return None
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix
            path = path[len(root) :]
        if path.startswith(self._prefixes):
            for pattern, route in self._routes:
                found = pattern.fullmatch(path)
                if found is not None:
                    return route, found.groupdict()
        return None

    async def front(
        self,
        route: InferenceRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve a matched request with its request id, trace and access record."""
        trace, token = self.tracker.begin(scope)
        status = 500
        try:
            id_header = (b"x-request-id", trace.request_id.encode("latin-1"))
            status = await self.serve(route, params, scope, receive, send, trace, id_header)
        finally:
            self.tracker.end(scope, trace, token, status)

    def starlette_endpoint(self, route: InferenceRoute) -> ASGIApp:
        """The same route for Starlette's router, which answers what the front does not take
        (405 for a wrong method; every request once middleware was added to the app)."""
        return _RouteApp(self, route)

    async def serve(
        self,
        route: InferenceRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        trace: RequestTrace,
        id_header: tuple[bytes, bytes] | None = None,
    ) -> int:
        """Guards, body, prediction and reply (or the mapped error) for one inference request;
        returns the status sent. ``trace`` is the request's (``RequestTracker.begin``);
        ``id_header`` goes on the response (the front's request id)."""
        scope["endpoint"] = route.endpoint  # the access record's protocol label
        guards = self.guards
        # ASGI header names are lower-case; the first of repeated headers wins, as in Starlette
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        try:
            client = scope.get("client")
            admitted = await admit(
                guards, headers, route.role, route.described, client[0] if client else None
            )
            check_content_type(headers, ACCEPTED_TYPES[route.tag])
            body = await receive_body(
                receive,
                guards.limits,
                headers.get("content-encoding"),
                headers.get("content-length"),
            )
            call = InferenceCall(
                self.plane,
                params["name"],
                params.get("version"),
                headers,
                body,
                trace,
                admitted.deadline,
            )
            with DisconnectWatch(receive, trace) as watch:
                reply = await watch.run(route.endpoint(call))
        except ClientDisconnect:
            guards.rejections["client_disconnected"] += 1
            response = Response(status_code=CLIENT_CLOSED)
        except RtserveError as exc:
            response = await handle_rtserve_error(Request(scope), exc)
        except Exception as exc:  # noqa: BLE001 - logged there; the client learns nothing internal
            response = await handle_unexpected(Request(scope), exc)
        else:
            extra = rate_headers(admitted.rate) if admitted.rate is not None else None
            await _send_reply(send, reply, extra, id_header)
            return 200
        if id_header is not None:
            response.raw_headers.append(id_header)
        if trace.version:  # routed before it failed: say which version (and variant) failed
            response.raw_headers.append((b"rtserve-model-version", trace.version.encode("latin-1")))
            if trace.variant:
                response.raw_headers.append((b"rtserve-variant", trace.variant.encode("latin-1")))
        await response(scope, receive, send)
        return response.status_code


class _RouteApp:
    """An ``InferenceRoute`` as an ASGI app (a plain object, so Starlette does not wrap it)."""

    def __init__(self, router: InferenceRouter, route: InferenceRoute) -> None:
        self.router = router
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace: RequestTrace = scope["state"]["trace"]  # ``RequestContextMiddleware`` made it
        await self.router.serve(self.route, scope["path_params"], scope, receive, send, trace)


async def _send_reply(
    send: Send,
    reply: Reply,
    extra: dict[str, str] | None,
    id_header: tuple[bytes, bytes] | None,
) -> None:
    media = reply.headers.get("Content-Type", JSON)
    head = [
        (b"content-type", media.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode("latin-1")),
    ]
    for key, value in reply.headers.items():
        if key != "Content-Type":
            head.append((key.lower().encode("latin-1"), value.encode("latin-1")))
    if extra:
        head += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    if id_header is not None:
        head.append(id_header)
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": reply.body})
