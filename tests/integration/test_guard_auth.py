"""Authentication and roles, swept over every route of the route table."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from starlette.testclient import TestClient

from rtserve.guard.auth import hash_key
from rtserve.server.app import create_app
from rtserve.server.routes import ROUTES, Route
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.integration.guard_support import records_body, v2_body

SECRET = "integration-secret-" + "x" * 48
KEYS = {
    "predict": "key-for-predict-0001",
    "read": "key-for-read-0002",
    "admin": "key-for-admin-0003",
}


def bearer(roles: list[str], **claims: object) -> str:
    body = {"sub": "svc", "iss": "idp", "aud": "rtserve", "exp": time.time() + 300, "roles": roles}
    body.update(claims)
    return jwt.encode(body, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def secured(dense_bundle: Path) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RTSERVE_AUTH__JWT_SECRET", SECRET)  # secrets come from the environment
        settings = Settings.load(
            bundles=[str(dense_bundle)],
            auth={
                "enabled": True,
                "jwt_issuer": "idp",
                "jwt_audience": "rtserve",
                # the sweep below fails on purpose, many times a minute from one address
                "max_failures_per_minute": 0,
                "api_keys": [
                    {"name": f"{role}-client", "sha256": hash_key(key), "roles": [role]}
                    for role, key in KEYS.items()
                ],
            },
        )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def call(client: TestClient, route: Route, headers: dict[str, str]) -> int:
    path = route.path.replace("{name}", "dense").replace("{version}", "2")
    if route.method == "GET":
        return client.get(path, headers=headers).status_code
    body = v2_body() if route.path.endswith("/infer") else records_body()
    return client.request(route.method, path, json=body, headers=headers).status_code


def allowed(held: str, needed: str) -> bool:
    return needed == "public" or held == needed or held == "admin"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_follows_its_role(secured: TestClient, route: Route) -> None:
    public = route.role == "public"
    # no credentials, a bad key, a forged token: 401 unless the route is public
    for headers in ({}, {"x-api-key": "not-a-key"}, {"authorization": "Bearer a.b.c"}):
        status = call(secured, route, headers)
        assert (status != 401) if public else (status == 401), (headers, status)
    # past the guard, the admin swap routes answer 409 here: this server has no registry
    passed = {200, 409} if route.tag == "admin" else {200}
    for held, key in KEYS.items():
        status = call(secured, route, {"x-api-key": key})
        assert status in (passed if allowed(held, route.role) else {403}), (held, status)
    for held in ("predict", "read", "admin"):
        status = call(secured, route, {"authorization": f"Bearer {bearer([held])}"})
        assert status in (passed if allowed(held, route.role) else {403}), (held, status)


def test_a_401_says_how_to_authenticate_and_a_403_which_role_is_missing(
    secured: TestClient,
) -> None:
    response = secured.post("/v1/models/dense:predict", json=records_body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthenticated"
    response = secured.post(
        "/v1/models/dense:predict", json=records_body(), headers={"x-api-key": KEYS["read"]}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "needs the 'predict' role; 'key:read-client' holds: read" in response.json()["error"]


def test_expired_and_wrong_audience_tokens_are_401(secured: TestClient) -> None:
    for token in (bearer(["admin"], exp=time.time() - 5), bearer(["admin"], aud="other")):
        response = secured.get("/v2/models/dense", headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401


def test_keys_and_tokens_never_reach_the_logs(
    secured: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = bearer(["admin"])
    with caplog.at_level(logging.DEBUG):
        secured.post(
            "/v1/models/dense:predict", json=records_body(), headers={"x-api-key": KEYS["predict"]}
        )
        secured.get("/v2/models/dense", headers={"authorization": f"Bearer {token}"})
        secured.get("/v2/models/dense", headers={"x-api-key": "wrong-key-attempt"})
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records  # the access log did record these requests
    for secret in (KEYS["predict"], token, "wrong-key-attempt", SECRET):
        assert secret not in logged


def test_auth_is_off_by_default(client: TestClient) -> None:
    assert client.post("/v1/models/dense:predict", json=records_body()).status_code == 200
