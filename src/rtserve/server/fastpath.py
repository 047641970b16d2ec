"""The inference routes as raw ASGI: the hot path of every prediction.

Starlette's router, ``Request`` objects and exception middleware cost more per request than a
small model's prediction. ``InferenceRouter`` sits in front of them and serves the route table's
``InferenceRoute`` entries itself, with the same guards as every other route (``admit``, bounded
body, disconnect watch) and the same error mapping (``error_handlers``); any other request
passes through to Starlette unchanged. A request answered inline creates no task and no timer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rtserve.engine.dataplane import DataPlane, Reply
from rtserve.errors import RtserveError
from rtserve.server.endpoints import ACCEPTED_TYPES, JSON, InferenceCall, check_content_type
from rtserve.server.error_handlers import handle_rtserve_error, handle_unexpected
from rtserve.server.guards import (
    CLIENT_CLOSED,
    DisconnectWatch,
    Guards,
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
    """Raw-ASGI middleware: serve the inference routes, pass everything else to ``app``.

    It runs inside ``RequestContextMiddleware`` (request id, access record) and sets
    ``scope["endpoint"]`` as Starlette's router would, so the access record labels the request
    with its route's protocol.
    """

    def __init__(
        self, *, routes: Sequence[InferenceRoute], guards: Guards, plane: DataPlane
    ) -> None:
        self.app: ASGIApp = _no_app
        self.guards = guards
        self.plane = plane
        self._routes = [(_pattern(route.path), route) for route in routes]
        self._prefixes = tuple({route.path.split("{", 1)[0] for route in routes})

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Put this router in front of ``app`` (a middleware factory for ``add_middleware``)."""
        self.app = app
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an inference request, or hand the scope on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix
                path = path[len(root) :]
            if path.startswith(self._prefixes):
                for pattern, route in self._routes:
                    match = pattern.fullmatch(path)
                    if match is not None:
                        await self.serve(route, match.groupdict(), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    def starlette_endpoint(self, route: InferenceRoute) -> ASGIApp:
        """The same route for Starlette's router, which still answers what this one passes on
        (405 for a wrong method, paths under a mount this router does not recognise)."""
        return _RouteApp(self, route)

    async def serve(
        self,
        route: InferenceRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Guards, body, prediction and reply (or the mapped error) for one inference request."""
        scope["endpoint"] = route.endpoint  # the access record's protocol label
        guards = self.guards
        # ASGI header names are lower-case; the first of repeated headers wins, as in Starlette
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        request_id: str = scope["state"]["request_id"]
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
                request_id,
                admitted.deadline,
            )
            with DisconnectWatch(receive) as watch:
                reply = await watch.run(route.endpoint(call))
        except ClientDisconnect:
            guards.rejections["client_disconnected"] += 1
            await Response(status_code=CLIENT_CLOSED)(scope, receive, send)
            return
        except RtserveError as exc:
            await (await handle_rtserve_error(Request(scope), exc))(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001 - logged there; the client learns nothing internal
            await (await handle_unexpected(Request(scope), exc))(scope, receive, send)
            return
        extra = rate_headers(admitted.rate) if admitted.rate is not None else None
        await _send_reply(send, reply, extra)


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("InferenceRouter.wrap(app) was not called")


class _RouteApp:
    """An ``InferenceRoute`` as an ASGI app (a plain object, so Starlette does not wrap it)."""

    def __init__(self, router: InferenceRouter, route: InferenceRoute) -> None:
        self.router = router
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router.serve(self.route, scope["path_params"], scope, receive, send)


async def _send_reply(send: Send, reply: Reply, extra: dict[str, str] | None) -> None:
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
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": reply.body})
