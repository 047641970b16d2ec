"""Per-client rate limits over HTTP: 429 with Retry-After and RateLimit-*, in memory and in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rtserve.guard.auth import hash_key
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.integration.guard_support import records_body

CLIENTS = {"noisy": "key-noisy-0001", "quiet": "key-quiet-0002"}


def app_settings(bundle: Path, **rate: Any) -> Settings:
    return Settings.load(
        bundles=[str(bundle)],
        auth={
            "enabled": True,
            "api_keys": [
                {"name": name, "sha256": hash_key(key), "roles": ["predict", "read"]}
                for name, key in CLIENTS.items()
            ],
        },
        rate_limit=rate,
    )


def predict(client: TestClient, who: str):
    return client.post(
        "/v1/models/dense:predict", json=records_body(), headers={"x-api-key": CLIENTS[who]}
    )


@pytest.fixture
def limited(dense_bundle: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(app_settings(dense_bundle, default="5/minute")), raise_server_exceptions=False
    ) as client:
        wait_ready(client)
        yield client


def test_a_client_over_its_limit_gets_429_with_retry_after_and_ratelimit_headers(
    limited: TestClient,
) -> None:
    remaining = []
    for _ in range(5):
        response = predict(limited, "noisy")
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "5"
        assert response.headers["ratelimit-policy"] == "5;w=60"
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    response = predict(limited, "noisy")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-remaining"] == "0"
    assert 0 <= int(response.headers["ratelimit-reset"]) <= 60


def test_other_clients_are_unaffected(limited: TestClient) -> None:
    for _ in range(6):
        predict(limited, "noisy")
    assert predict(limited, "noisy").status_code == 429
    response = predict(limited, "quiet")
    assert response.status_code == 200
    assert response.headers["ratelimit-remaining"] == "4"


def test_health_probes_are_never_rate_limited(limited: TestClient) -> None:
    for _ in range(20):
        assert limited.get("/v2/health/live").status_code == 200


@pytest.mark.redis
def test_redis_storage_shares_one_limit_across_workers(dense_bundle: Path) -> None:
    run = uuid.uuid4().hex[:12]  # Redis outlives test runs: a client name of our own
    key = f"key-{run}"
    settings = Settings.load(
        bundles=[str(dense_bundle)],
        auth={
            "enabled": True,
            "api_keys": [{"name": f"client-{run}", "sha256": hash_key(key), "roles": ["predict"]}],
        },
        rate_limit={"default": "4/hour", "storage": "redis://127.0.0.1:6379/0"},
    )
    with ExitStack() as stack:
        workers = [
            stack.enter_context(TestClient(create_app(settings), raise_server_exceptions=False))
            for _ in range(2)
        ]
        for worker in workers:
            wait_ready(worker)

        def status(worker: TestClient) -> int:
            return worker.post(
                "/v1/models/dense:predict", json=records_body(), headers={"x-api-key": key}
            ).status_code

        assert [status(workers[i % 2]) for i in range(4)] == [200, 200, 200, 200]
        assert status(workers[0]) == 429
        assert status(workers[1]) == 429
