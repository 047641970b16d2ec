"""Run the app under uvicorn: one process, or N worker processes sharing one port.

Graceful shutdown on SIGTERM/SIGINT: readiness turns false at once (``DataPlane.draining``); the
server keeps answering for ``drain_delay_s`` (so load balancers stop sending), then stops
accepting, lets in-flight and queued requests finish within ``graceful_timeout_s``, and exits 0.
A shutdown that overruns its grace period (a hung model) exits 1 instead of hanging forever.
From the first signal on, every response carries ``Connection: close`` and ends its connection,
so keep-alive clients reconnect (to another instance) instead of reusing this one.

Connections speak HTTP/1.1 through ``BoundedHttpProtocol`` (request heads bounded in size and
time, ``settings.limits``) in both modes; WebSockets are off (no route uses them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from rtserve.observability.metrics import multiprocess_metrics
from rtserve.server.app import SETTINGS_ENV, create_app
from rtserve.server.http_protocol import HeaderLimits, http_protocol
from rtserve.settings import Settings

logger = logging.getLogger("rtserve.server")
#: Extra seconds past drain + grace before a stuck shutdown is ended with exit code 1.
_WATCHDOG_MARGIN_S = 5.0
#: The default header that makes uvicorn close each connection after its response.
_CONNECTION_CLOSE = (b"connection", b"close")


def run(settings: Settings, app: Starlette | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain and exit 0 (see the module docstring).

    ``app`` (one worker only) serves a ready-made app, e.g. one whose manager was loaded up
    front. With ``workers > 1`` uvicorn's supervisor starts that many processes, each loading
    every bundle itself (no shared model state), all accepting on the same socket.
    """
    common: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": None,  # logging is configured by the CLI, once
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(settings.server.graceful_timeout_s),
        "timeout_keep_alive": settings.server.keep_alive_s,
        "lifespan": "on",
        "server_header": False,
        # request heads bounded in size and time (a picklable factory: workers get it too)
        "http": http_protocol(HeaderLimits.from_settings(settings.limits)),
        "ws": "none",  # no WebSocket route: an upgrade request is answered as plain HTTP
        # X-Forwarded-For only from the configured proxies: uvicorn's default trusts loopback
        # (and FORWARDED_ALLOW_IPS), which would let any local caller pick its client address.
        "proxy_headers": bool(settings.server.trusted_proxies),
        "forwarded_allow_ips": list(settings.server.trusted_proxies),
    }
    _exit_zero_after_signal()
    if settings.server.workers == 1:
        app = app if app is not None else create_app(settings, own_process=True)

        def drain() -> None:
            app.state.dataplane.draining = True

        server = DrainingServer(
            uvicorn.Config(app, **common),
            drain_delay_s=settings.server.drain_delay_s,
            grace_s=settings.server.graceful_timeout_s,
            on_drain=drain,
        )
        server.run()
        return
    os.environ[SETTINGS_ENV] = _worker_settings_json(settings)
    with _shared_metrics(settings):  # workers write metrics to one directory (multiprocess mode)
        uvicorn.run(
            "rtserve.server.app:app_from_env",
            factory=True,
            workers=settings.server.workers,
            **common,
        )


def _shared_metrics(settings: Settings) -> contextlib.AbstractContextManager[object]:
    if not settings.metrics.enabled:
        return contextlib.nullcontext()
    return multiprocess_metrics(settings.metrics.multiprocess_dir)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with readiness dropped at the first signal and an optional drain delay.

    First SIGTERM/SIGINT: ``on_drain()`` (readiness false), ``Connection: close`` on every
    response from then on, keep serving ``drain_delay_s``, then uvicorn's graceful shutdown. A
    second signal skips the rest of the delay; a third (SIGINT) forces the exit as uvicorn does.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain_delay_s: float,
        grace_s: float,
        on_drain: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self.drain_delay_s = drain_delay_s
        self.grace_s = grace_s
        self._on_drain = on_drain
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start draining on the first signal; stop accepting after the drain delay."""
        if self._exit_at is None:
            self._exit_at = time.monotonic() + self.drain_delay_s
            self._on_drain()
            self._say_connection_close()
            for connection in self.server_state.connections:  # requests being answered now
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    cycle.keep_alive = False  # as uvicorn's own shutdown marks them
            logger.info(
                "signal %d: readiness false; draining for %.1fs, then up to %.1fs for in-flight "
                "requests",
                sig,
                self.drain_delay_s,
                self.grace_s,
            )
            _start_watchdog(self.drain_delay_s + self.grace_s + _WATCHDOG_MARGIN_S)
            if self.drain_delay_s > 0:
                return  # on_tick calls the shutdown when the delay is over
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick (every 0.1 s), ending the drain delay when it is over."""
        if self._exit_at is not None and not self.should_exit and time.monotonic() >= self._exit_at:
            self.should_exit = True
        stop = await super().on_tick(counter)  # renews the default headers once a second
        if self._exit_at is not None:
            self._say_connection_close()
        return stop

    def _say_connection_close(self) -> None:
        """Every request read from now on is answered with ``Connection: close``, after which
        uvicorn closes its connection. Idle keep-alive connections stay open until then: a
        request a client sends on one during the drain is still answered."""
        state = self.server_state
        if _CONNECTION_CLOSE not in state.default_headers:
            state.default_headers = [*state.default_headers, _CONNECTION_CLOSE]


def _start_watchdog(seconds: float) -> None:
    """End the process with exit code 1 if the shutdown has not finished after ``seconds``."""

    def overrun() -> None:
        logger.error("graceful shutdown did not finish within %.1fs; exiting with 1", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, overrun)
    timer.daemon = True
    timer.start()


def _worker_settings_json(settings: Settings) -> str:
    """Settings for worker processes as JSON, secrets included (``model_dump_json`` masks them)."""
    data = settings.model_dump(mode="json")
    secret = settings.auth.jwt_secret
    if secret is not None:
        data["auth"]["jwt_secret"] = secret.get_secret_value()
    return json.dumps(data)


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
