"""The guards on the HTTP side: every route of the table wrapped with auth, rate limit, deadline,
bounded body reading and cancellation on client disconnect.

The route table (``rtserve.server.routes``) gives each route its role; ``guard_route`` turns that
into checks, in the order that spends the least on a request that will be refused: deadline
header, credentials and role, rate limit, then the body (bounded in size and time), then the
endpoint, which is cancelled (with its queued model work) if the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from rtserve.errors import RequestTimeoutError
from rtserve.guard.auth import Authenticator
from rtserve.guard.deadline import TIMEOUT_HEADER, DeadlinePolicy
from rtserve.guard.limits import BodyBuffer, RequestLimits
from rtserve.guard.ratelimit import RateLimiter, RateStatus
from rtserve.settings import Settings

Endpoint = Callable[[Request], Awaitable[Response]]


class _Route(Protocol):
    """What ``guard_route`` reads of a route (``rtserve.server.routes.RouteSpec``; not imported
    here because routes -> endpoints -> ``read_body`` here)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def endpoint(self) -> Endpoint: ...


logger = logging.getLogger("rtserve.guard")
#: Status logged for a request whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499


@dataclass
class Guards:
    """The server-wide guards, built once from settings (``app.state.guards``)."""

    auth: Authenticator
    rate: RateLimiter
    deadlines: DeadlinePolicy
    limits: RequestLimits
    #: Requests refused or abandoned before reaching a model, by reason.
    rejections: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_settings(cls, settings: Settings) -> Guards:
        """Build every guard; invalid configuration raises ``SettingsError`` at start-up."""
        return cls(
            auth=Authenticator.from_settings(settings.auth),
            rate=RateLimiter.from_settings(settings.rate_limit),
            deadlines=DeadlinePolicy.from_settings(settings),
            limits=RequestLimits.from_settings(settings),
        )


def guard_route(spec: _Route, guards: Guards) -> Endpoint:
    """``spec.endpoint`` behind the guards its role calls for (public routes: deadline only)."""
    endpoint = spec.endpoint
    what = f"{spec.method} {spec.path}"
    has_body = spec.method in ("POST", "PUT", "PATCH")

    async def guarded(request: Request) -> Response:
        request.state.deadline = guards.deadlines.from_header(request.headers.get(TIMEOUT_HEADER))
        status: RateStatus | None = None
        if spec.role != "public":
            try:
                principal = guards.auth.authenticate(request.headers)
                guards.auth.authorize(principal, spec.role, what)
            except Exception:
                guards.rejections["unauthorized"] += 1
                raise
            request.state.principal = principal
            if guards.rate.enabled:
                client = principal.subject
                if principal.method == "anonymous":
                    client = request.client.host if request.client else "unknown"
                try:
                    status = await guards.rate.hit(client)
                except Exception:
                    guards.rejections["rate_limited"] += 1
                    raise
        if not has_body:
            response = await endpoint(request)
        else:
            try:
                await read_body(request)
                response = await _unless_disconnected(endpoint, request)
            except ClientDisconnect:
                guards.rejections["client_disconnected"] += 1
                return Response(status_code=CLIENT_CLOSED)
        if status is not None:
            response.headers.update(rate_headers(status))
        return response

    guarded.__name__ = getattr(endpoint, "__name__", spec.name)
    guarded.__doc__ = endpoint.__doc__
    return guarded


async def read_body(request: Request) -> bytes:
    """The request body, decoded and bounded: 413 past the size limit (checked as it streams in,
    after decompression for gzip/deflate), 408 when it takes longer than the read timeout."""
    cached: bytes | None = getattr(request.state, "body", None)
    if cached is not None:
        return cached
    guards: Guards | None = getattr(request.app.state, "guards", None)
    limits = (
        guards.limits
        if guards is not None
        else RequestLimits.from_settings(request.app.state.settings)
    )
    buffer = BodyBuffer(limits.max_body_bytes, request.headers.get("content-encoding"))
    buffer.check_declared(request.headers.get("content-length"))
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                buffer.feed(chunk)
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {limits.body_timeout_s:g} s "
            f"({buffer.size} bytes so far); send it at once, or in smaller requests",
            field="body",
        ) from None
    body = buffer.finish()
    request.state.body = body
    return body


async def _unless_disconnected(endpoint: Endpoint, request: Request) -> Response:
    """Run the endpoint; if the client disconnects first, cancel it (and its queued model work)."""
    work = asyncio.ensure_future(endpoint(request))
    watch = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        watch.cancel()
    if work.done():
        return work.result()
    work.cancel()
    raise ClientDisconnect()


async def _disconnected(receive: Receive) -> None:
    """Return once the server reports that the client went away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def rate_headers(status: RateStatus) -> dict[str, str]:
    """``RateLimit-*`` headers (IETF draft) for a client's window."""
    return {
        "RateLimit-Limit": str(status.limit),
        "RateLimit-Remaining": str(status.remaining),
        "RateLimit-Reset": str(max(0, round(status.reset_after))),
        "RateLimit-Policy": f"{status.limit};w={status.window_s}",
    }
