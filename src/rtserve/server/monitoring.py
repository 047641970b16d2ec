"""Monitoring endpoints: ``/metrics`` and live drift (thin: they ask the app's ``Observability``
and render), and the model catalog observability reads from the ``ModelManager``."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from rtserve.bundle.schema import Schema
from rtserve.engine.manager import ModelManager
from rtserve.errors import RtserveError
from rtserve.observability.drift import Reference
from rtserve.observability.hub import Observability
from rtserve.observability.metrics import ModelSnapshot


class ManagerCatalog:
    """The served models as observability sees them (a ``Catalog`` over the ``ModelManager``)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def models(self) -> list[ModelSnapshot]:
        """Every served model version with its readiness."""
        states = []
        for m in self.manager.all():
            cache = getattr(m, "cache", None)  # the response cache, when one is configured
            stats = cache.stats() if cache is not None else None
            states.append(
                ModelSnapshot(
                    m.name,
                    m.version,
                    m.digest,
                    m.platform,
                    m.ready,
                    cache_hits=getattr(stats, "hits", 0),
                    cache_misses=getattr(stats, "misses", 0),
                )
            )
        return states

    def schema(self, name: str, version: str) -> Schema | None:
        """The schema of a served version, once its manifest is read."""
        try:
            served = self.manager.get(name, version)
        except RtserveError:
            return None
        return served.manifest.model_schema if served.manifest is not None else None

    def reference(self, name: str, version: str) -> Reference | None:
        """Schema + training profile of a loaded version (None before it loads)."""
        try:
            served = self.manager.get(name, version)
        except RtserveError:
            return None
        if served.predictor is None:
            return None
        bundle = served.predictor.bundle
        return Reference(served.predictor.schema, bundle.read_profile(), bundle.digest)


def _observability(request: Request) -> Observability:
    hub: Observability = request.app.state.observability
    return hub


async def metrics(request: Request) -> Response:
    """Prometheus text format of every rtserve metric (all workers' values)."""
    body, content_type = _observability(request).exposition()
    return Response(body, media_type=content_type)


async def drift(request: Request) -> Response:
    """Drift of a model version's recent traffic against its training profile."""
    manager: ModelManager = request.app.state.manager
    served = manager.get(
        request.path_params["name"],
        request.path_params.get("version") or request.query_params.get("version"),
    )
    report = _observability(request).drift_report(served.name, served.version)
    return Response(msgspec.json.encode(report), media_type="application/json")
