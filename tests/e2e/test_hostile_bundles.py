"""Specification: ``rtserve verify`` and ``rtserve serve`` refuse re-sealed hostile bundles.

Real processes, started from outside, against the bundles of ``tests/hostile_bundles.py`` (each
edited and re-sealed so that every hash checks out). ``verify`` must exit 1 naming the code it
refused; ``serve`` must stay up but never become ready, and say why in its log. In both, the
payload's marker file must never be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rtserve.loadgen.launch import free_port, rtserve_command
from tests.hostile_bundles import BUILDERS, HostileBundle

pytestmark = pytest.mark.e2e

#: How long a server may take to try (and fail) to load its one bundle.
LOAD_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def hostile_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileBundle]:
    root = tmp_path_factory.mktemp("hostile")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_rtserve_verify_refuses_a_hostile_bundle_and_runs_nothing(
    kind: str, hostile_bundles: dict[str, HostileBundle]
) -> None:
    hostile = hostile_bundles[kind]
    result = subprocess.run(
        [sys.executable, "-m", "rtserve", "verify", str(hostile.path), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["error"]["code"] == "untrusted_code"
    assert hostile.names in document["error"]["error"]
    assert "see rtserve.runtimes.trusted_types" in document["error"]["error"]
    assert "Traceback" not in result.stderr
    assert not hostile.marker.exists()


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_rtserve_serve_never_becomes_ready_with_a_hostile_bundle_and_says_why(
    kind: str, hostile_bundles: dict[str, HostileBundle], tmp_path: Path
) -> None:
    hostile = hostile_bundles[kind]
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            rtserve_command([hostile.path], port),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    statuses: set[int] = set()
    try:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline and "failed to load" not in log.read_text("utf-8"):
            assert process.poll() is None, log.read_text("utf-8")
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                statuses.add(httpx.get(url, timeout=1).status_code)
            time.sleep(0.1)
        text = log.read_text("utf-8")
        assert "failed to load" in text, text
        statuses.add(httpx.get(url, timeout=5).status_code)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert 200 not in statuses
    assert 503 in statuses
    assert hostile.names in text
    assert "see rtserve.runtimes.trusted_types" in text  # the allow-list refused it, nothing else
    assert not hostile.marker.exists()
