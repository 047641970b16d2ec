"""Start a server for a load test and time it: from process start until it reports ready.

``launch`` runs a command (``rtserve serve BUNDLE`` or the bare server) on a free loopback port,
polls its readiness URL every 10 ms and stops it with SIGTERM when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rtserve.errors import LoadTestError

#: How often readiness is polled while a server starts.
POLL_S = 0.01


@dataclass(frozen=True)
class Launched:
    """A server started for a load test."""

    process: subprocess.Popen[bytes]
    url: str
    #: Seconds from starting the process to the first 200 from its readiness URL.
    startup_s: float


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rtserve_command(
    bundles: Sequence[str | Path], port: int, extra: Sequence[str] = ()
) -> list[str]:
    """``python -m rtserve serve BUNDLES --host 127.0.0.1 --port PORT EXTRA``."""
    return [
        sys.executable,
        "-m",
        "rtserve",
        "serve",
        *map(str, bundles),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def bare_command(port: int) -> list[str]:
    """The bare constant server (``rtserve.loadgen.bareserver``) on ``port``.

    It runs as a script, not ``-m``, so that its start-up does not pay for importing rtserve.
    """
    from rtserve.loadgen import bareserver

    return [sys.executable, bareserver.__file__, "--port", str(port)]


@contextlib.contextmanager
def launch(
    command: Sequence[str],
    url: str,
    ready_path: str,
    *,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    cpus: tuple[int, ...] | None = None,
    cwd: str | Path | None = None,
) -> Iterator[Launched]:
    """Start ``command``, wait until ``url + ready_path`` answers 200, stop it on exit.

    ``cpus`` pins the server (and every process it starts later) to those CPUs.

    Raises:
        LoadTestError: the process exits or is not ready within ``timeout_s`` (its output is
            quoted).
    """
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 (our own command line, no shell)
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        try:
            if cpus is not None:
                os.sched_setaffinity(process.pid, set(cpus))
            startup = _wait_ready(process, url + ready_path, started, timeout_s, log)
            yield Launched(process, url, startup)
        finally:
            stop(process)


def _wait_ready(
    process: subprocess.Popen[bytes],
    ready_url: str,
    started: float,
    timeout_s: float,
    log: IO[bytes],
) -> float:
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise LoadTestError(
                f"the server exited with status {process.returncode} before it was ready:\n"
                + _tail(log),
                field="target",
            )
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as answer:  # noqa: S310 (http to loopback)
                if answer.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise LoadTestError(
        f"the server was not ready at {ready_url} after {timeout_s:.0f} s:\n" + _tail(log),
        field="target",
    )


def _tail(log: IO[bytes], size: int = 4000) -> str:
    log.seek(0)
    return log.read()[-size:].decode(errors="replace")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
