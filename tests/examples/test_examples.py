"""The documented examples run as written."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from rtserve.demo import example_record


def test_notebook_example_builds_loads_and_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.notebook_to_bundle import main

    main(tmp_path)
    out = capsys.readouterr().out
    assert "probabilities" in out
    assert "matches the recorded outputs" in out
    assert (tmp_path / "fraud-1" / "rtserve.yaml").is_file()


@pytest.fixture
def bundle(fraud_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BUNDLE", str(fraud_bundle))
    for name in ("examples.fastapi_mount", "examples.flask_view"):
        sys.modules.pop(name, None)
    return fraud_bundle


def test_fastapi_mount_serves_rtserve_under_a_prefix(bundle: Path) -> None:
    module = importlib.import_module("examples.fastapi_mount")
    with TestClient(module.api) as client:
        assert client.get("/hello").json() == {"hello": "world"}
        assert client.get("/ml/v2/health/ready").json() == {"ready": True}
        response = client.post(
            "/ml/v1/models/fraud:predict", json={"instances": [example_record()]}
        )
        assert response.status_code == 200
        assert response.json()["model"]["name"] == "fraud"
        assert (
            client.post(
                "/ml/v1/models/fraud:predict", json={"instances": [{"amount": -1}]}
            ).status_code
            == 422
        )


def test_flask_view_predicts_in_process(bundle: Path) -> None:
    module = importlib.import_module("examples.flask_view")
    client = module.app.test_client()
    ok = client.post("/score", json={"instances": [example_record()]})
    assert ok.status_code == 200
    assert ok.get_json()["version"] == "1"
    bad = client.post("/score", json={"instances": [{**example_record(), "amount": -1.0}]})
    assert bad.status_code == 422
    assert bad.get_json()["field"] == "amount"
