"""The one route table: every path, its endpoint and the role it needs."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from rtserve.engine.dataplane import Reply
from rtserve.server import endpoints, monitoring

Endpoint = Callable[[Request], Awaitable[Response]]
#: An inference endpoint: takes an admitted request, returns the data plane's reply.
InferenceHandler = Callable[[endpoints.InferenceCall], Awaitable[Reply]]
#: Who may call a route: ``public`` needs no credentials (health probes).
Role = Literal["public", "predict", "read", "admin"]


@dataclass(frozen=True)
class Route:
    """One HTTP route: path, handler, the role it needs, and its OpenAPI summary and tag."""

    method: str
    path: str
    endpoint: Callable[..., Awaitable[Any]]
    name: str
    role: Role
    summary: str
    tag: str


@dataclass(frozen=True)
class RouteSpec(Route):
    """A route served by Starlette: ``endpoint`` takes a Request and returns a Response."""

    endpoint: Endpoint


@dataclass(frozen=True)
class InferenceRoute(Route):
    """An inference route, served as raw ASGI by ``rtserve.server.fastpath`` (the hot path)."""

    endpoint: InferenceHandler

    @functools.cached_property
    def described(self) -> str:
        """``POST /v2/models/{name}/infer``: how errors name the route."""
        return f"{self.method} {self.path}"


_M = "/v2/models/{name}"
_MV = "/v2/models/{name}/versions/{version}"

ROUTES: tuple[RouteSpec | InferenceRoute, ...] = (
    RouteSpec(
        "GET", "/v2/health/live", endpoints.live, "v2_live", "public", "Server live", "health"
    ),
    RouteSpec(
        "GET", "/v2/health/ready", endpoints.ready, "v2_ready", "public", "Server ready", "health"
    ),
    RouteSpec("GET", "/healthz", endpoints.live, "healthz", "public", "Liveness alias", "health"),
    RouteSpec("GET", "/readyz", endpoints.ready, "readyz", "public", "Readiness alias", "health"),
    RouteSpec(
        "GET", "/v2", endpoints.server_metadata, "v2_metadata", "read", "Server metadata", "v2"
    ),
    RouteSpec(
        "GET",
        "/v2/",
        endpoints.server_metadata,
        "v2_metadata_slash",
        "read",
        "Server metadata",
        "v2",
    ),
    RouteSpec(
        "GET", "/v2/models", endpoints.repository_index, "v2_models", "read", "Model index", "v2"
    ),
    RouteSpec("GET", _M, endpoints.model_metadata, "v2_model", "read", "Model metadata", "v2"),
    RouteSpec(
        "GET", _MV, endpoints.model_metadata, "v2_model_version", "read", "Model metadata", "v2"
    ),
    RouteSpec(
        "GET", f"{_M}/ready", endpoints.model_ready, "v2_model_ready", "read", "Model ready", "v2"
    ),
    RouteSpec(
        "GET",
        f"{_MV}/ready",
        endpoints.model_ready,
        "v2_model_version_ready",
        "read",
        "Model ready",
        "v2",
    ),
    InferenceRoute(
        "POST", f"{_M}/infer", endpoints.infer, "v2_infer", "predict", "Inference", "v2"
    ),
    InferenceRoute(
        "POST", f"{_MV}/infer", endpoints.infer, "v2_infer_version", "predict", "Inference", "v2"
    ),
    InferenceRoute(
        "POST",
        "/v1/models/{name}:predict",
        endpoints.predict,
        "v1_predict",
        "predict",
        "Predict records",
        "records",
    ),
    InferenceRoute(
        "POST",
        "/v1/models/{name}/versions/{version}:predict",
        endpoints.predict,
        "v1_predict_version",
        "predict",
        "Predict records",
        "records",
    ),
    RouteSpec("GET", "/v1/models", endpoints.models, "v1_models", "read", "Models", "records"),
    RouteSpec(
        "GET",
        "/v1/models/{name}",
        endpoints.model_description,
        "v1_model",
        "read",
        "Model description",
        "records",
    ),
    RouteSpec(
        "GET",
        "/v1/models/{name}/versions/{version}",
        endpoints.model_description,
        "v1_model_version",
        "read",
        "Model description",
        "records",
    ),
    RouteSpec(
        "GET",
        "/v1/models/{name}/versions",
        endpoints.model_versions,
        "v1_model_versions",
        "admin",
        "Resident versions",
        "admin",
    ),
    RouteSpec(
        "GET",
        "/v1/models/{name}/rollout",
        endpoints.rollout,
        "v1_rollout",
        "read",
        "Rollout: traffic split, shadow comparison, promotion gate",
        "records",
    ),
    RouteSpec(
        "POST",
        "/v1/models/{name}:reload",
        endpoints.reload,
        "v1_reload",
        "admin",
        "Re-read the registry pointer now",
        "admin",
    ),
    RouteSpec(
        "POST",
        "/v1/models/{name}/versions/{version}:load",
        endpoints.load_version,
        "v1_load_version",
        "admin",
        "Load a registry version side by side",
        "admin",
    ),
    RouteSpec(
        "POST",
        "/v1/models/{name}/versions/{version}:unload",
        endpoints.unload_version,
        "v1_unload_version",
        "admin",
        "Unload a non-default version",
        "admin",
    ),
    RouteSpec(
        "GET", "/metrics", monitoring.metrics, "metrics", "read", "Prometheus metrics", "observe"
    ),
    RouteSpec(
        "GET",
        "/v1/models/{name}/drift",
        monitoring.drift,
        "v1_drift",
        "read",
        "Live drift",
        "observe",
    ),
    RouteSpec(
        "GET",
        "/v1/models/{name}/versions/{version}/drift",
        monitoring.drift,
        "v1_drift_version",
        "read",
        "Live drift",
        "observe",
    ),
    RouteSpec("GET", "/", endpoints.index, "index", "public", "Landing page", "docs"),
)
