"""Run the app under uvicorn: one process, or N worker processes sharing one port."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

import uvicorn

from rtserve.server.app import SETTINGS_ENV, create_app
from rtserve.settings import Settings

logger = logging.getLogger("rtserve.server")


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``graceful_timeout_s`` to finish.

    With ``workers > 1`` uvicorn's supervisor starts that many processes, each loading every
    bundle itself (no shared model state), all accepting on the same socket.
    """
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # logging is configured by the CLI, once
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.graceful_timeout_s),
        "lifespan": "on",
        "server_header": False,
    }
    _exit_zero_after_signal()
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run(
        "rtserve.server.app:app_from_env",
        factory=True,
        workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )


def _exit_zero_after_signal() -> None:
    """Make a signal-initiated stop exit 0.

    uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the handler
    that was installed before it started; this handler turns that into a clean exit, so
    orchestrators see a deliberate stop, not a crash.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
