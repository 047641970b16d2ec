"""Serving from the registry in-process: follow a stage, swap atomically, refuse a broken version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from rtserve.registry import Registry
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.registry_support import (
    build_broken_version,
    build_version,
    open_registry,
    push,
    record,
    rollback,
    to_production,
)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap-bundles")
    built = {v: build_version(root, v) for v in ("1", "2")}
    built["3"] = build_broken_version(root, "3")
    return built


@pytest.fixture
def registry(tmp_path: Path, versions: dict[str, Path]) -> Iterator[Registry]:
    registry = open_registry(tmp_path / "registry")
    for bundle in versions.values():
        push(registry, bundle)
    to_production(registry, "1")
    yield registry
    registry.close()


def settings_for(registry_dir: Path, **extra: object) -> Settings:
    return Settings(
        registry={"url": str(registry_dir), "follow": ["dense@production"], "poll_interval_s": 0.1},
        decision_log={"enabled": False},
        **extra,  # type: ignore[arg-type]
    )


def served_version(client: TestClient) -> str:
    response = client.post("/v1/models/dense:predict", json={"instances": [record()]})
    assert response.status_code == 200, response.text
    assert response.headers["rtserve-model-version"] == response.json()["model"]["version"]
    return str(response.json()["model"]["version"])


def wait_for_version(client: TestClient, version: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_version(client) == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"still serving {served_version(client)}, not {version}")


def test_the_server_serves_the_production_version_and_follows_promotions_and_rollbacks(
    registry: Registry, tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        assert served_version(client) == "1"
        to_production(registry, "2")
        wait_for_version(client, "2")
        rollback(registry)
        wait_for_version(client, "1")
        listing = client.get("/v1/models/dense/versions").json()
        assert listing["default_version"] == "1"
        # the old version was unloaded after it drained: one version resident outside a swap
        deadline = time.monotonic() + 10
        while len(client.get("/v1/models/dense/versions").json()["versions"]) > 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    actions = [(e.action, e.subject) for e in registry.audit(subject="dense")]
    assert ("swap", "dense@2") in actions
    assert ("swap", "dense@1") in actions
    assert ("unload", "dense@1") in actions
    assert ("unload", "dense@2") in actions


def test_a_version_that_fails_its_warm_up_is_never_switched_to(
    registry: Registry, tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        to_production(registry, "3")
        deadline = time.monotonic() + 20
        while (client.get("/v1/models/dense").json()["last_swap"] or {}).get("version") != "3":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        described = client.get("/v1/models/dense").json()
        assert described["version"] == "1"
        assert described["last_swap"]["outcome"] == "warmup_failed"
        assert "does NOT match" in described["last_swap"]["reason"]
        assert served_version(client) == "1"
        assert client.get("/v2/health/ready").status_code == 200
        metrics = client.get("/metrics").text
        assert 'rtserve_model_swaps_total{model="dense",outcome="warmup_failed"} 1.0' in metrics
    refused = [e for e in registry.audit(subject="dense@3") if e.action == "warmup-failed"]
    assert len(refused) == 1  # tried once per pointer move, not at every poll


def test_the_model_description_shows_the_registry_card_of_the_served_version(
    registry: Registry, tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        card = client.get("/v1/models/dense").json()["card"]
        assert card["owner"] == "risk-team"
        assert card["intended_use"] == "tests"


def test_an_admin_reload_swaps_at_once_without_waiting_for_the_poll(
    registry: Registry, tmp_path: Path
) -> None:
    settings = Settings(
        registry={"url": str(tmp_path / "registry"), "follow": ["dense@production"],
                  "poll_interval_s": 3600},
        decision_log={"enabled": False},
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        to_production(registry, "2")
        assert served_version(client) == "1"
        status = client.post("/v1/models/dense:reload").json()
        assert status["outcome"] == "swapped"
        assert served_version(client) == "2"


def test_a_reload_without_a_registry_is_a_conflict_that_says_why(dense_bundle: Path) -> None:
    settings = Settings(bundles=[str(dense_bundle)], decision_log={"enabled": False})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        response = client.post("/v1/models/dense:reload")
        assert response.status_code == 409
        assert "does not serve from a registry" in response.json()["error"]


def test_the_version_answering_unversioned_calls_cannot_be_unloaded(
    registry: Registry, tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        response = client.post("/v1/models/dense/versions/1:unload")
        assert response.status_code == 409
        loaded = client.post("/v1/models/dense/versions/2:load")
        assert loaded.status_code == 200, loaded.text
        answer = client.post("/v1/models/dense/versions/2:predict", json={"instances": [record()]})
        assert answer.headers["rtserve-model-version"] == "2"
        assert served_version(client) == "1"
        unloaded = client.post("/v1/models/dense/versions/2:unload")
        assert unloaded.status_code == 200, unloaded.text
        assert (
            client.post(
                "/v1/models/dense/versions/2:predict", json={"instances": [record()]}
            ).status_code
            == 404
        )


def test_oip_answers_name_the_version_in_body_and_header(
    registry: Registry, tmp_path: Path
) -> None:
    body = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
                       for c, v in record().items()]}  # fmt: skip
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        response = client.post("/v2/models/dense/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == "1"
        assert response.headers["rtserve-model-version"] == "1"


def test_an_unsigned_version_is_refused_while_the_signed_one_keeps_serving(
    tmp_path: Path, versions: dict[str, Path]
) -> None:
    import shutil

    from rtserve.bundle.signature import generate_key_pair, load_private_key
    from rtserve.bundle.signer import sign_bundle

    private, public = generate_key_pair(tmp_path / "keys")
    signed = shutil.copytree(versions["1"], tmp_path / "signed-1")
    sign_bundle(signed, load_private_key(private))
    registry = open_registry(tmp_path / "registry")
    push(registry, signed)
    push(registry, versions["2"])  # unsigned
    to_production(registry, "1")
    settings = settings_for(
        tmp_path / "registry", loading={"require_signature": True, "trusted_keys": [str(public)]}
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        to_production(registry, "2")
        status = client.post("/v1/models/dense:reload").json()
        assert status["outcome"] == "refused"
        assert "signature" in status["reason"]
        assert served_version(client) == "1"
    refused = [e for e in registry.audit(subject="dense@2") if e.action == "refused-load"]
    assert refused
    assert "signature" in refused[0].reason
    registry.close()


def test_a_version_loaded_side_by_side_is_switched_to_without_loading_it_again(
    registry: Registry, tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(tmp_path / "registry"))) as client:
        wait_ready(client)
        assert client.post("/v1/models/dense/versions/2:load").status_code == 200
        side = client.get("/v1/models/dense/versions").json()["versions"]
        since = {v["version"]: v["since"] for v in side}
        to_production(registry, "2")
        wait_for_version(client, "2")
        now = {
            v["version"]: v["since"]
            for v in client.get("/v1/models/dense/versions").json()["versions"]
        }
        assert now["2"] == since["2"]  # the very same loaded version now answers
