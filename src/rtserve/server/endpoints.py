"""Thin HTTP endpoints: read the request, call the data plane, render the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from rtserve.engine.dataplane import DataPlane, Reply
from rtserve.errors import (
    MalformedRequestError,
    NotFoundError,
    RegistryConflictError,
    UnsupportedMediaTypeError,
)
from rtserve.events import RequestTrace
from rtserve.guard.deadline import Deadline

if TYPE_CHECKING:  # the follower (and the registry under it) loads only with a registry
    from rtserve.engine.follower import RegistryFollower as RegistryFollowerLike

JSON = "application/json"
_JSON_TYPES = ("application/json", "text/json")
# tritonclient sends the binary tensor extension as octet-stream (or without a content type).
_INFER_TYPES = (*_JSON_TYPES, "application/octet-stream")


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type=JSON)


def check_content_type(headers: Mapping[str, str], accepted: tuple[str, ...]) -> None:
    """415 unless the request's content type (if it names one) is one of ``accepted``."""
    raw = headers.get("content-type")
    if raw is None:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media and media not in accepted:
        raise UnsupportedMediaTypeError(
            f"content type {media!r} is not accepted here; send one of {list(accepted)}",
            field="content-type",
        )


_MAX_LENGTH_DIGITS = 18


def _header_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("inference-header-content-length")
    if raw is None:
        return None
    value = raw.strip()
    # ASCII digits only (str.isdigit takes '²'), and few enough that int() is cheap: a length
    # beyond the body limit is refused by the decoder anyway.
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS):
        raise MalformedRequestError(
            f"Inference-Header-Content-Length {raw[:40]!r} is not a non-negative integer of at "
            f"most {_MAX_LENGTH_DIGITS} digits",
            field="Inference-Header-Content-Length",
        )
    return int(value)


def _version(request: Request) -> str | None:
    version: str | None = request.path_params.get("version")
    return version


# --- health ---------------------------------------------------------------------------------


async def live(request: Request) -> Response:
    """Liveness: the process answers (Kubernetes livenessProbe)."""
    return _json({"live": _plane(request).live()})


async def ready(request: Request) -> Response:
    """Readiness: every model warmed up and matched its recorded outputs (readinessProbe)."""
    is_ready = _plane(request).ready()
    return _json({"ready": is_ready}, 200 if is_ready else 503)


async def model_ready(request: Request) -> Response:
    """Readiness of one model (version)."""
    name = request.path_params["name"]
    is_ready = _plane(request).model_ready(name, _version(request))
    return _json({"name": name, "ready": is_ready}, 200 if is_ready else 503)


# --- metadata -------------------------------------------------------------------------------


async def server_metadata(request: Request) -> Response:
    """Open Inference Protocol server metadata."""
    return Response(_plane(request).server_metadata(), media_type=JSON)


async def repository_index(request: Request) -> Response:
    """Every served model version with its state (Open Inference Protocol repository index)."""
    return _json(_plane(request).repository_index())


async def models(request: Request) -> Response:
    """Records API: every served model, the version unversioned calls get, and its versions."""
    return _json({"models": _plane(request).models()})


async def model_metadata(request: Request) -> Response:
    """Open Inference Protocol model metadata."""
    body = _plane(request).model_metadata(request.path_params["name"], _version(request))
    return Response(body, media_type=JSON)


async def model_description(request: Request) -> Response:
    """Records API: the model's input JSON Schema, version, digest and state."""
    return _json(_plane(request).model_description(request.path_params["name"], _version(request)))


# --- inference ------------------------------------------------------------------------------
# The hot path: served as raw ASGI by ``rtserve.server.fastpath`` (no Request object), after the
# same guards as every other route.


@dataclass(slots=True)
class InferenceCall:
    """One admitted inference request: the route's parameters, headers and (bounded) body, and
    the request's trace, which the data plane fills in."""

    plane: DataPlane
    name: str
    version: str | None
    headers: Mapping[str, str]
    body: bytes
    trace: RequestTrace
    deadline: Deadline


async def infer(call: InferenceCall) -> Reply:
    """Open Inference Protocol inference (JSON or binary tensor extension)."""
    return await call.plane.infer_v2(
        call.name,
        call.version,
        call.body,
        _header_length(call.headers),
        call.trace,
        deadline=call.deadline,
        headers=call.headers,
    )


async def predict(call: InferenceCall) -> Reply:
    """Records API inference: ``{"instances": [{...}, ...]}``."""
    return await call.plane.predict_records(
        call.name, call.version, call.body, call.trace, deadline=call.deadline, headers=call.headers
    )


#: Content types each inference protocol (the route table's tag) accepts.
ACCEPTED_TYPES = {"v2": _INFER_TYPES, "records": _JSON_TYPES}


async def index(request: Request) -> Response:
    """A tiny landing page pointing at the docs and the served models.

    The page is public, so with authentication on it lists no models: anyone could read them.
    """
    if request.app.state.guards.auth.enabled:
        return HTMLResponse(
            "<h1>rtserve</h1><p><a href='/docs'>API docs</a></p>"
            "<p>Served models are not listed while authentication is on.</p>"
        )
    models = "".join(
        f"<li><a href='/v1/models/{m.name}'>{m.name}:{m.version}</a> — {m.state.value}</li>"
        for m in _plane(request).manager.all()
    )
    return HTMLResponse(f"<h1>rtserve</h1><p><a href='/docs'>API docs</a></p><ul>{models}</ul>")


# --- admin: versions and hot swap -------------------------------------------------------------


def _follower(request: Request) -> RegistryFollowerLike:
    follower: RegistryFollowerLike | None = request.app.state.follower
    if follower is None:
        raise RegistryConflictError(
            "this server does not serve from a registry, so there is nothing to reload or load; "
            "start it with `rtserve serve --registry DIR NAME@STAGE` (or registry.follow)",
            field="registry",
        )
    return follower


async def model_versions(request: Request) -> Response:
    """Admin: the resident versions of a model, which one is the default, the last swap."""
    return _json(_plane(request).model_versions(request.path_params["name"]))


async def rollout(request: Request) -> Response:
    """The traffic policy applied to a model here: spec, state, per-variant windows, shadow
    comparison, the promotion gate's last verdict and the decisions this server took."""
    return _json(_plane(request).rollout_status(request.path_params["name"]))


async def reload(request: Request) -> Response:
    """Admin: read the registry pointer now and swap if it moved (also retries a refused one)."""
    name = request.path_params["name"]
    follower = _follower(request)
    if name not in follower.followed:
        raise NotFoundError(
            f"model {name!r} is not followed from the registry here; followed: "
            f"{sorted(follower.followed)}",
            field="model_name",
        )
    status = await asyncio.to_thread(follower.check, name, reason="admin reload", force=True)
    return _json(status)


async def load_version(request: Request) -> Response:
    """Admin: load a registry version beside the default one (for explicit version calls)."""
    follower = _follower(request)
    name, version = request.path_params["name"], request.path_params["version"]
    return _json(await asyncio.to_thread(follower.load_version, name, version))


async def unload_version(request: Request) -> Response:
    """Admin: unload a version after it drains; never the one unversioned calls get."""
    name, version = request.path_params["name"], request.path_params["version"]
    manager = _plane(request).manager
    if manager.default_version(name) == version:
        raise RegistryConflictError(
            f"model {name}:{version} answers the unversioned calls; promote or roll back "
            "another version first, then unload this one",
            field="version",
        )
    follower: RegistryFollowerLike | None = request.app.state.follower
    if follower is not None:
        return _json(await asyncio.to_thread(follower.unload_version, name, version))
    served = manager.get(name, version)
    await asyncio.to_thread(manager.retire, served, manager.settings.registry.drain_timeout_s)
    return _json({"model": name, "version": version, "state": served.state.value})
