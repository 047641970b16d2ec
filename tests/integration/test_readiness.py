"""Readiness: a server is ready only when every bundle loaded and reproduced its recorded outputs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from rtserve.bundle.bundle import Bundle
from rtserve.server.app import create_app
from rtserve.settings import Settings


def _bundle_with_wrong_recorded_outputs(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    validation = json.loads((target / "validation.json").read_text())
    validation["outputs"]["probabilities"] = [
        [p + 0.25 for p in row] for row in validation["outputs"]["probabilities"]
    ]
    (target / "validation.json").write_text(json.dumps(validation))
    manifest = Bundle.open(target, check=False).manifest
    Bundle.seal(target, manifest)  # hashes are right again: only the outputs disagree
    return target


def test_a_bundle_that_fails_warm_up_never_becomes_ready(
    fraud_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _bundle_with_wrong_recorded_outputs(fraud_bundle, tmp_path / "fraud-broken")
    with TestClient(
        create_app(Settings.load(bundles=[str(broken)])), raise_server_exceptions=False
    ) as client:
        for _ in range(400):
            response = client.get("/v1/models/fraud")  # 404 until the bundle is opened
            if response.status_code == 200 and response.json()["state"] not in (
                "loading",
                "warming",
            ):
                break
            time.sleep(0.05)
        description = client.get("/v1/models/fraud").json()
        assert description["state"] == "failed"
        assert "does NOT match" in description["reason"]
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": False}
        response = client.post("/v1/models/fraud:predict", json={"instances": [{}]})
        assert response.status_code == 503
        assert response.json()["code"] == "not_ready"
        assert client.get("/v2/health/live").status_code == 200
    assert any("does NOT match" in r.getMessage() for r in caplog.records)


def test_a_missing_bundle_keeps_the_server_unready(fraud_bundle: Path, tmp_path: Path) -> None:
    settings = Settings.load(bundles=[str(fraud_bundle), str(tmp_path / "absent")])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(400):
            if client.get("/v2/models/fraud/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/v2/models/fraud/ready").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503


def test_a_worker_that_loads_before_serving_is_settled_at_its_first_request(
    fraud_bundle: Path, tmp_path: Path
) -> None:
    broken = _bundle_with_wrong_recorded_outputs(fraud_bundle, tmp_path / "fraud-broken")
    settings = Settings.load(bundles=[str(fraud_bundle)])
    with TestClient(create_app(settings, load_before_serving=True)) as client:
        assert client.get("/v2/health/ready").status_code == 200  # no polling needed
    settings = Settings.load(bundles=[str(broken)])
    app = create_app(settings, load_before_serving=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/models/fraud").json()["state"] == "failed"  # settled, not loading
        assert client.get("/v2/health/live").status_code == 200
