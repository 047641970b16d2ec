"""Composition root: settings + model manager + data plane + routes -> one ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rtserve.engine.dataplane import DataPlane
from rtserve.engine.manager import ModelManager
from rtserve.engine.rollout import LiveRollout
from rtserve.errors import RtserveError
from rtserve.observability.hub import Observability
from rtserve.observability.metrics import Metrics
from rtserve.server.error_handlers import EXCEPTION_HANDLERS
from rtserve.server.fastpath import InferenceRouter
from rtserve.server.lane import RecordsLane
from rtserve.server.middleware import RequestContextMiddleware, RequestTracker
from rtserve.server.monitoring import ManagerCatalog
from rtserve.server.openapi import DOCS_HTML, openapi_document
from rtserve.server.request_guards import RequestGuards, guard_route
from rtserve.server.routes import ROUTES, InferenceRoute, RouteSpec
from rtserve.settings import Settings
from rtserve.version import rtserve_version

logger = logging.getLogger("rtserve.server")
#: The GIL switch interval of rtserve's own server process (Python's default: 5 ms).
GIL_SWITCH_S = 0.001
#: Workers started by ``--workers N`` read their settings from this variable (JSON).
SETTINGS_ENV = "RTSERVE_WORKER_SETTINGS_JSON"


def create_app(
    settings: Settings,
    manager: ModelManager | None = None,
    *,
    load_before_serving: bool = False,
    own_process: bool = False,
) -> Starlette:
    """The rtserve ASGI app; mount it in FastAPI/Starlette or run it with uvicorn.

    Bundles in ``settings.bundles`` load in the background at start-up, so liveness answers at
    once while readiness waits for every warm-up. ``load_before_serving`` holds start-up until
    loading has finished instead: a worker process that shares its port with others then
    accepts no connection (and so answers no request with 503) before its models are settled.
    ``own_process`` (set by rtserve's own runner, never for an app embedded in someone else's
    process) tunes the process for serving: what exists once the models are loaded leaves the
    cyclic GC's full scans, and the GIL switch interval drops to ``GIL_SWITCH_S``.
    """
    manager = manager if manager is not None else ModelManager(settings)
    observability = Observability(settings, ManagerCatalog(manager))
    rollout_applies = _rollout_applies(settings)
    plane = DataPlane(manager, observability.observers)
    if observability.decisions is not None:  # shadows' decisions beside the primary's
        plane.rollouts.observers.append(observability.decisions)
    if observability.metrics is not None:
        plane.rollouts.on_shadow.append(_count_shadow(observability.metrics))
    document = msgspec.json.encode(openapi_document(rtserve_version()))

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    def count_swap(model: str, outcome: str) -> None:
        if observability.metrics is not None:
            observability.metrics.model_swaps.labels(model, outcome).inc()

    def start_up() -> None:
        """Registry specs first (then follow them), then the bundles given as paths."""
        follow = settings.registry.follow
        if follow:
            # imported only when serving from a registry (SQLAlchemy and Alembic are heavy)
            from rtserve.engine.follower import RegistryFollower, open_registry

            try:
                follower = RegistryFollower(
                    manager, open_registry(settings.registry), settings.registry, count_swap
                )
            except RtserveError as exc:
                logger.error("registry %s cannot be opened: %s", settings.registry.url, exc)
                manager.broken[str(settings.registry.url)] = exc.message
                manager.pending -= len(follow)
            else:
                app_state.follower = follower
                follower.load_initial()
                follower.start()
        # a configured rollout holds readiness until it is applied: no request before it
        # reaches a version the split would not send it to
        manager.load_all(settings.bundles, held=int(rollout_applies))
        if rollout_applies:
            from rtserve.engine.rollout_control import start_rollouts

            metrics = observability.metrics
            try:
                app_state.rollout_controller = start_rollouts(
                    settings,
                    plane.rollouts,
                    manager,
                    app_state.follower,
                    on_decision=None if metrics is None else _count_decision(metrics),
                    on_look=None if metrics is None else _show_rollout(metrics),
                )
            except RtserveError as exc:  # a bad spec file: unready, and the reason is shown
                logger.error("rollout cannot be applied: %s", exc.message)
                manager.broken[str(settings.rollout.file)] = exc.message
            finally:
                manager.pending -= 1

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # unready from the first request on
        manager.pending = (
            len(settings.bundles) + len(settings.registry.follow) + int(rollout_applies)
        )
        loading = asyncio.create_task(asyncio.to_thread(start_up))
        if own_process:
            loading.add_done_callback(_freeze_long_lived)
            # an observer thread holding the GIL (draining a batch of events) hands it back to
            # a waiting event loop after 1 ms instead of 5: a request waits less behind it
            sys.setswitchinterval(GIL_SWITCH_S)
        observability.start()
        if load_before_serving:
            await asyncio.wait({loading})
        try:
            yield
        finally:
            plane.draining = True
            if not loading.done():
                await asyncio.wait({loading}, timeout=5)
            if app_state.rollout_controller is not None:
                await asyncio.to_thread(app_state.rollout_controller.stop)
            plane.rollouts.stop()
            if app_state.follower is not None:
                await asyncio.to_thread(app_state.follower.stop)
            manager.close()
            await guards.rate.close()
            await asyncio.to_thread(observability.close)  # drain queues, close sinks

    # auth, rate limits, and the data plane's deadlines and body limits (built once, shared);
    # failed authentications counted in the metrics
    guards = RequestGuards.from_settings(
        settings, limits=plane.limits, deadlines=plane.deadlines, metrics=observability.metrics
    )
    inference = [r for r in ROUTES if isinstance(r, InferenceRoute)]
    tracker = RequestTracker(observability.access)
    router = InferenceRouter(routes=inference, guards=guards, plane=plane, tracker=tracker)
    routes = [
        Route(r.path, guard_route(r, guards), methods=[r.method], name=r.name)
        for r in ROUTES
        if isinstance(r, RouteSpec)
    ]
    routes += [
        Route(r.path, router.starlette_endpoint(r), methods=[r.method], name=r.name)
        for r in inference
    ]
    routes += [
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
    ]
    app = RtserveApp(
        routes=routes,
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.add_middleware(RequestContextMiddleware, tracker=tracker)  # request id + access record
    app.front = router
    if settings.batching.group_requests:
        app.lane = RecordsLane(plane=plane, guards=guards, tracker=tracker, routes=inference)
    app.state.settings = settings
    app.state.manager = manager
    app.state.dataplane = plane
    app.state.observability = observability
    app.state.guards = guards
    app.state.inference_router = router
    app.state.follower = None  # set once the registry is open (serving from a registry)
    app.state.rollout_controller = None  # set once models are loaded, if a rollout applies
    app_state = app.state
    return app


class RtserveApp(Starlette):
    """Starlette, with the inference requests served ahead of its middleware stack.

    ``front`` takes the requests it recognises before Starlette's error middleware, request
    middleware and router: for a small model those layers cost as much as the prediction. It
    steps aside once anyone adds middleware to the app (an embedding service's CORS or auth),
    so that middleware sees inference requests too: Starlette's router serves them then.
    """

    front: InferenceRouter | None = None
    lane: RecordsLane | None = None
    _own_middleware = 0  # middleware ``create_app`` added (before ``front`` was set)

    def add_middleware(self, *args: Any, **kwargs: Any) -> None:
        """Starlette's ``add_middleware``; middleware added after ``create_app`` also sees the
        inference requests."""
        super().add_middleware(*args, **kwargs)
        if self.front is None:
            self._own_middleware = len(self.user_middleware)

    def records_lane(self) -> RecordsLane | None:
        """The lane rtserve's HTTP protocol hands records predict requests to (None once
        middleware was added after ``create_app``: that middleware must see them)."""
        if len(self.user_middleware) != self._own_middleware:
            return None
        return self.lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an inference request at once, anything else through Starlette."""
        front = self.front
        if (
            front is not None
            and scope["type"] == "http"
            and len(self.user_middleware) == self._own_middleware
        ):
            matched = front.match(scope)
            if matched is not None:
                scope["app"] = self
                await front.front(*matched, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _count_shadow(metrics: Metrics) -> Callable[[str, str, str], None]:
    def count(model: str, version: str, outcome: str) -> None:
        metrics.shadow_predictions.labels(model, version, outcome).inc()

    return count


def _count_decision(metrics: Metrics) -> Callable[[str, str], None]:
    def count(model: str, status: str) -> None:
        metrics.rollout_decisions.labels(model, status).inc()

    return count


def _rollout_applies(settings: Settings) -> bool:
    """Whether the server applies rollouts: from a spec file, or the registry's for the names
    it follows."""
    return bool(
        settings.rollout.file or (settings.registry.follow and settings.rollout.from_registry)
    )


def _show_rollout(metrics: Metrics) -> Callable[[LiveRollout], None]:
    """Gauges of one rollout, refreshed at each look of the gate."""

    def show(live: LiveRollout) -> None:
        spec, window = live.spec, live.spec.gate.window_s
        if spec.canary is not None:
            metrics.rollout_weight.labels(spec.model, spec.canary.version).set(live.state.weight)
        for stats in live.shadows.values():
            summary = stats.summary(window)["window"]
            if summary["label_agreement"] is not None:
                metrics.shadow_label_agreement.labels(spec.model, stats.version).set(
                    summary["label_agreement"]
                )
            metrics.shadow_abs_delta_p99.labels(spec.model, stats.version).set(
                summary["abs_delta_p99"]
            )

    return show


def _freeze_long_lived(_: object) -> None:
    """Once the models are loaded, keep what exists now out of the cyclic GC's full scans.

    A full collection otherwise walks every module, model and array object (~60 ms here) and
    holds the GIL meanwhile: a latency spike for every request in flight.
    """
    gc.collect()
    gc.freeze()


def app_from_env() -> Starlette:
    """Factory for worker processes: settings come as JSON from ``RTSERVE_WORKER_SETTINGS_JSON``."""
    from rtserve.observability.logging import configure_logging

    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings.load()
    configure_logging(settings.logging.level)  # a spawned worker starts with no logging set up
    return create_app(settings, load_before_serving=True, own_process=True)
