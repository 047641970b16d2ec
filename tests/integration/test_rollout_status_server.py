"""``rtserve rollout status --server``: the live figures of a real server applying a rollout, read
over HTTP with the caller's API key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.guard_support import live_server
from tests.registry_support import MAINTAINER, build_version, open_registry, push, to_production

pytestmark = pytest.mark.integration

READER_KEY = "reader-secret-0001"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A server on a loopback port with dense@1 in production and a canary of dense@2 at 10%
    (from a spec file), needing an API key; and a registry holding the same rollout."""
    root = tmp_path_factory.mktemp("rollout-server")
    bundles = [build_version(root, label) for label in ("1", "2")]
    spec = root / "rollout.yaml"
    spec.write_text('model: dense\nproduction: "1"\ncanary: {version: "2", weight: 10}\n')
    registry = root / "registry"
    reg = open_registry(registry)
    for bundle in bundles:
        push(reg, bundle)
    to_production(reg, "1")
    reg.close()
    settings = Settings.load(
        bundles=[str(b) for b in bundles],
        rollout={"file": str(spec)},
        auth={"enabled": True, "api_keys": [{
            "name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(),
            "roles": ["read"]}]},
    )  # fmt: skip
    with live_server(create_app(settings)) as url:
        yield url, registry


def _status(registry: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(
        app,
        ["rollout", "--registry", str(registry), "--actor", MAINTAINER, *args],
        env={"NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
    )


def test_status_prints_the_server_s_live_rollout_document(served):
    url, registry = served
    assert _status(registry, "start", "dense", "--canary", "2", "--weight", "10").exit_code == 0
    done = _status(registry, "--json", "status", "dense", "--server", url, "--api-key", READER_KEY)
    assert done.exit_code == 0, done.output + done.stderr
    document = json.loads(done.stdout)
    assert document["rollout"]["spec"]["canary"]["version"] == "2"
    live = document["live"]
    assert {"variants", "shadows", "gate"} <= set(live)
    assert live["active"] is True
    readable = _status(registry, "status", "dense", "--server", url,
                       env={"RTSERVE_API_KEY": READER_KEY})  # fmt: skip
    assert readable.exit_code == 0, readable.stderr
    assert f"live on {url}:" in readable.stdout
    shown = json.loads(readable.stdout.split(f"live on {url}:\n", 1)[1])
    assert set(shown) == set(live)  # the figures move between two reads; the document stays


def test_status_without_the_key_the_server_wants_is_one_error_line(served):
    url, registry = served
    done = _status(registry, "status", "dense", "--server", url)
    assert done.exit_code == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {url}/v1/models/dense/rollout answered 401")
    assert "--api-key or RTSERVE_API_KEY" in line
