"""A real ``rtserve serve`` process: proxy headers name the client only when they come from a
configured trusted proxy, with one worker and with several (uvicorn's own default trusts every
local caller's X-Forwarded-For)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import ServerProcess, start_server

pytestmark = pytest.mark.e2e

LIMIT = 3  # requests per minute and client, in each worker (memory storage)


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def serve(
    request: pytest.FixtureRequest, e2e_bundles: tuple[Path, Path], tmp_path: Path
) -> Iterator[object]:
    """Start a server with ``trusted_proxies`` (none: the default); returns it and its worker
    count."""
    workers: int = request.param
    running: list[ServerProcess] = []

    def start(trusted_proxies: list[str]) -> tuple[ServerProcess, int]:
        settings: dict[str, object] = {
            "rate_limit": {"default": f"{LIMIT}/minute"},
            "decision_log": {"enabled": False},
        }
        if trusted_proxies:  # else the default, whatever it is
            settings["server"] = {"trusted_proxies": trusted_proxies}
        config = tmp_path / "rtserve.yml"
        config.write_text(yaml.safe_dump(settings))
        args = [str(e2e_bundles[1]), "--config", str(config), "--workers", str(workers)]
        server = start_server(args, tmp_path / "server.log")
        running.append(server)
        return server, workers

    yield start
    for server in running:
        assert server.stop() == 0, server.logs()


def metadata(server: ServerProcess, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.url}/v2/models/dense", headers=headers, timeout=10)


def test_forged_proxy_headers_from_an_untrusted_peer_do_not_change_the_client(serve) -> None:
    server, workers = serve([])
    statuses = []
    errors = []
    # every worker's bucket can take LIMIT requests: one more than all of them must be refused
    for i in range(LIMIT * workers + 1):
        forged = f"198.51.100.{i + 1}"
        response = metadata(
            server,
            {"x-forwarded-for": forged, "forwarded": f"for={forged}", "x-real-ip": forged},
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            errors.append(response.json()["error"])
    assert 429 in statuses, statuses
    assert all("'ip:127.0.0.1'" in error for error in errors)


def test_a_trusted_proxy_names_the_client_with_x_forwarded_for(serve) -> None:
    server, workers = serve(["127.0.0.1"])
    client = {"x-forwarded-for": "203.0.113.7"}
    responses = [metadata(server, client) for _ in range(LIMIT * workers + 1)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert "'ip:203.0.113.7'" in refused[0].json()["error"]
    # another client behind the same proxy has a bucket of its own
    assert metadata(server, {"x-forwarded-for": "203.0.113.8"}).status_code == 200
