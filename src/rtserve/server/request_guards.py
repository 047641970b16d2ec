"""The guards on the HTTP request side: auth, rate limit, deadline, bounded body reading and
cancellation on client disconnect, shared by every route.

The route table (``rtserve.server.routes``) gives each route its role. Checks run in the order
that spends the least on a request that will be refused (``admit``): deadline header, the
address's failed-authentication limit, credentials and role, rate limit; then, for the inference
routes, the body (bounded in size and time, ``receive_body``) and the prediction, which is
cancelled with its queued model work if the client goes away (``DisconnectWatch``).
``guard_route`` wraps the other routes for Starlette.

The client address is the ASGI peer (``scope["client"]``) and nothing else: uvicorn replaces it
with the ``X-Forwarded-For`` client only for a peer listed in ``trusted_proxies``, and no code
here reads ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP`` itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from rtserve.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
)
from rtserve.events import RequestTrace
from rtserve.guard.auth import (
    FAILURE_REASONS,
    Authenticator,
    Principal,
    address_identity,
    client_identity,
    not_found_unlisted,
)
from rtserve.guard.deadline import TIMEOUT_HEADER, Deadline, DeadlinePolicy
from rtserve.guard.limits import BodyBuffer, RequestLimits
from rtserve.guard.ratelimit import RateLimiter, RateStatus
from rtserve.observability.metrics import Metrics
from rtserve.server.routes import Endpoint, RouteSpec
from rtserve.settings import Settings

T = TypeVar("T")


logger = logging.getLogger("rtserve.guard")
#: Status logged for a request whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499


@dataclass
class RequestGuards:
    """The server-wide guards, built once from settings (``app.state.guards``)."""

    auth: Authenticator
    rate: RateLimiter
    deadlines: DeadlinePolicy
    limits: RequestLimits
    #: Requests refused or abandoned before reaching a model, by reason.
    rejections: Counter[str] = field(default_factory=Counter)
    #: Where failed authentications are counted (``rtserve_auth_failures_total``); None: nowhere.
    metrics: Metrics | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        limits: RequestLimits,
        deadlines: DeadlinePolicy,
        metrics: Metrics | None = None,
    ) -> RequestGuards:
        """Build auth and the rate limiter; invalid configuration raises ``SettingsError`` at
        start-up. ``limits`` and ``deadlines`` are the data plane's (built once from the same
        settings), so the HTTP side and the engine enforce one and the same policy."""
        auth = settings.auth
        failures = auth.max_failures_per_minute if auth.enabled else 0
        guards = cls(
            auth=Authenticator.from_settings(auth),
            rate=RateLimiter.from_settings(settings.rate_limit, auth_failures_per_minute=failures),
            deadlines=deadlines,
            limits=limits,
            metrics=metrics,
        )
        if metrics is not None and auth.enabled:
            for reason in FAILURE_REASONS:  # every series exists from the start, at 0
                metrics.auth_failures.labels(reason)
        return guards

    @property
    def wait(self) -> bool:
        """Whether admitting a request may wait (a rate limit or the failed-authentication
        limit: their stores may be remote); when not, ``admit_now`` admits it at once."""
        return self.rate.enabled or self.rate.failures is not None

    def failed_authentication(self, reason: str) -> None:
        """Count one refused authentication (a ``FAILURE_REASONS`` value)."""
        self.rejections["unauthorized"] += 1
        if self.metrics is not None:
            self.metrics.auth_failures.labels(reason).inc()


@dataclass(slots=True)
class Admitted:
    """What the access guards established about a request before its body is read."""

    deadline: Deadline
    principal: Principal | None  # None on public routes
    rate: RateStatus | None  # None when no rate limit applies


async def admit(
    guards: RequestGuards, headers: Mapping[str, str], role: str, what: str, client_host: str | None
) -> Admitted:
    """Deadline header, the address's failed-authentication limit, credentials and role, then
    the client's rate limit (cheapest first).

    ``client_host`` is the ASGI peer address (already the forwarded client when the peer is a
    trusted proxy). The rate-limit identity is namespaced: ``key:<name>``, ``jwt:<sub>``, or
    ``ip:<address>`` when authentication is off.

    Raises:
        InputError (bad deadline header), AuthenticationError (401), PermissionDeniedError
        (403), RateLimitedError (429: the client's rate limit, or too many failed
        authentications from its address); each refusal is counted in ``guards.rejections``,
        failed authentications also in ``rtserve_auth_failures_total``.
    """
    if not guards.wait:
        return admit_now(guards, headers, role, what)
    deadline = guards.deadlines.from_header(headers.get(TIMEOUT_HEADER))
    if role == "public":
        return Admitted(deadline, None, None)
    failures = guards.rate.failures  # None unless authentication is on
    address = address_identity(client_host)
    if failures is not None:
        try:
            await failures.check(address)  # a blocked address's credentials are not tried
        except RateLimitedError:
            guards.failed_authentication("blocked")
            raise
    try:
        principal = guards.auth.authenticate(headers)
    except AuthenticationError as exc:
        guards.failed_authentication(exc.reason)
        if failures is not None:
            await failures.failed(address)  # 429 instead when this failure was one too many
        raise
    _authorize(guards, principal, role, what)
    status: RateStatus | None = None
    if guards.rate.enabled:
        try:
            status = await guards.rate.hit(client_identity(principal, client_host))
        except Exception:
            guards.rejections["rate_limited"] += 1
            raise
    return Admitted(deadline, principal, status)


def admit_now(guards: RequestGuards, headers: Mapping[str, str], role: str, what: str) -> Admitted:
    """``admit`` for guards that never wait (``guards.wait`` false: no rate limit, no
    failed-authentication limit), without a coroutine: the deadline header, then credentials
    and role (the client's address plays no part then). Raises as ``admit`` does."""
    deadline = guards.deadlines.from_header(headers.get(TIMEOUT_HEADER))
    if role == "public":
        return Admitted(deadline, None, None)
    try:
        principal = guards.auth.authenticate(headers)
    except AuthenticationError as exc:
        guards.failed_authentication(exc.reason)
        raise
    _authorize(guards, principal, role, what)
    return Admitted(deadline, principal, None)


def _authorize(guards: RequestGuards, principal: Principal, role: str, what: str) -> None:
    try:
        guards.auth.authorize(principal, role, what)
    except Exception:
        guards.rejections["unauthorized"] += 1
        raise


def guard_route(spec: RouteSpec, guards: RequestGuards) -> Endpoint:
    """``spec.endpoint`` behind the guards its role calls for (public routes: deadline only).

    These are the routes without a body; the inference routes (``rtserve.server.fastpath``)
    read theirs with ``receive_body`` and watch for disconnects with ``DisconnectWatch``.
    """
    endpoint = spec.endpoint
    what = f"{spec.method} {spec.path}"

    async def guarded(request: Request) -> Response:
        host = request.client.host if request.client else None
        admitted = await admit(guards, request.headers, spec.role, what, host)
        request.state.deadline = admitted.deadline
        if admitted.principal is not None:
            request.state.principal = admitted.principal
        try:
            response = await endpoint(request)
        except NotFoundError as exc:
            if not guards.auth.enabled or "name" not in request.path_params:
                raise
            params = request.path_params
            version = params.get("version") or request.query_params.get("version")
            raise not_found_unlisted(exc, params["name"], version) from None
        if admitted.rate is not None:
            response.headers.update(rate_headers(admitted.rate))
        return response

    guarded.__name__ = getattr(endpoint, "__name__", spec.name)
    guarded.__doc__ = endpoint.__doc__
    return guarded


async def receive_body(
    receive: Receive, limits: RequestLimits, encoding: str | None, content_length: str | None
) -> bytes:
    """Read an ASGI request body: 413 past the size limit (checked as it streams in, after
    decompression for gzip/deflate), 408 when it takes longer than the read timeout.

    A body that arrives in one piece (the usual small request) sets no timer.

    Raises:
        ClientDisconnect: the client went away before the body was complete.
    """
    buffer = BodyBuffer(limits.max_body_bytes, encoding)
    buffer.check_declared(content_length)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    buffer.feed(message.get("body", b""))
    if message.get("more_body", False):
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                while message.get("more_body", False):
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnect()
                    buffer.feed(message.get("body", b""))
        except TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {limits.body_timeout_s:g} s "
                f"({buffer.size} bytes so far); send it at once, or in smaller requests",
                field="body",
            ) from None
    return buffer.finish()


class DisconnectWatch:
    """Cancels a request's work (and its queued model work) if the client goes away meanwhile.

    Watching needs a task that waits on ``receive``. Given the request's ``trace``, it starts
    only when the work says it is waiting (the watch installs ``start`` as ``trace.on_wait``: the
    batcher calls it for a request still waiting after ``LONG_WAIT_S``, the data plane when it
    decodes a large body in a thread): a request answered inline, or from a batch that runs soon,
    costs no task at all, and cancelling work that is about to run saves nothing. Without a
    trace nobody can say when the work waits, so it watches all along.
    """

    def __init__(self, receive: Receive, trace: RequestTrace | None = None) -> None:
        self._receive = receive
        self._owner: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._trace = trace
        self.gone = False

    def __enter__(self) -> DisconnectWatch:
        self._owner = asyncio.current_task()  # ``start`` may be called from a timer callback
        if self._trace is not None:
            self._trace.on_wait = self.start
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._trace is not None:
            self._trace.on_wait = None
        if self._watcher is not None:
            self._watcher.cancel()

    def start(self) -> None:
        """Watch from now on (idempotent)."""
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work``; raise ``ClientDisconnect`` if the client left before it finished."""
        if self._trace is None:
            self.start()  # nobody will say when the work waits: watch all along
        try:
            return await work
        except asyncio.CancelledError:
            if not self.gone:
                raise
            if self._owner is not None:
                self._owner.uncancel()
            raise ClientDisconnect() from None

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._owner is not None:
            self._owner.cancel()


def rate_headers(status: RateStatus) -> dict[str, str]:
    """``RateLimit-*`` headers (IETF draft) for a client's window."""
    return {
        "RateLimit-Limit": str(status.limit),
        "RateLimit-Remaining": str(status.remaining),
        "RateLimit-Reset": str(max(0, round(status.reset_after))),
        "RateLimit-Policy": f"{status.limit};w={status.window_s}",
    }
