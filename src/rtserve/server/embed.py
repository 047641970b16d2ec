"""Use rtserve from Python: an ASGI app to mount inside FastAPI/Starlette, or a blocking ``serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from rtserve.engine.manager import ModelManager
from rtserve.errors import NotReadyError
from rtserve.server.app import create_app
from rtserve.settings import Settings


def asgi_app(*bundles: str | Path, **settings: Any) -> Starlette:
    """An rtserve app with its models already loaded and warmed up, ready to mount.

    Mounted sub-applications get no lifespan events from their parent, so the models load here,
    before the app is returned. Example::

        api = FastAPI()
        api.mount("/ml", rtserve.server.asgi_app("bundles/fraud-1"))
        # POST /ml/v1/models/fraud:predict, GET /ml/v2/health/ready, ...

    Raises:
        NotReadyError: when a bundle cannot be loaded or fails its warm-up (with the reason).
    """
    resolved = Settings.load(**settings)
    manager = ModelManager(resolved)
    manager.load_all([str(b) for b in bundles])
    if not manager.ready:
        reasons = [f"{m.name}:{m.version}: {m.reason}" for m in manager.all() if not m.ready]
        reasons += [f"{source}: {why}" for source, why in manager.broken.items()]
        raise NotReadyError("; ".join(reasons) or "no bundle given")
    return create_app(resolved.model_copy(update={"bundles": []}), manager)


def serve(*bundles: str | Path, **settings: Any) -> None:
    """Serve bundles over HTTP until interrupted: the notebook twin of ``rtserve serve``.

    Keyword arguments are settings as ``Settings.load`` takes them (``server__port=8080``,
    ``server={"workers": 2}``, ...).
    """
    from rtserve.observability.logging import configure_logging
    from rtserve.server.runner import run

    resolved = Settings.load(bundles=[str(b) for b in bundles], **settings)
    configure_logging(resolved.logging.level)
    run(resolved)
