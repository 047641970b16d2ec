"""Identities can't be forged or mixed, over HTTP: namespaced rate-limit buckets, failed logins
limited per address, refusals that disclose nothing, and decision records keyed by the server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from rtserve.guard.auth import hash_key
from rtserve.observability.decisions import DecisionQuery, JsonlReader, SqlReader
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.integration.guard_support import records_body

SECRET = "identity-secret-" + "y" * 48
ISSUER = "https://idp.example/realm-51c9"
AUDIENCE = "scoring-audience-a7e2"
KEY = "key-of-alice-0001"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def bearer(**claims: Any) -> str:
    body = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": time.time() + 300,
        "roles": ["predict", "read"],
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


@pytest.fixture
def secured_app(
    dense_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An app factory: auth on (an API key named ``alice`` and HS256 tokens); ``rate_limit`` and
    ``auth`` settings as given."""
    monkeypatch.setenv("RTSERVE_AUTH__JWT_SECRET", SECRET)
    clients: list[TestClient] = []

    def make(rate_limit: dict[str, Any] | None = None, **auth: Any) -> TestClient:
        settings = Settings.load(
            bundles=[str(dense_bundle)],
            auth={
                "enabled": True,
                "jwt_issuer": ISSUER,
                "jwt_audience": AUDIENCE,
                "api_keys": [
                    {"name": "alice", "sha256": hash_key(KEY), "roles": ["predict", "read"]}
                ],
                **auth,
            },
            rate_limit=rate_limit or {},
            decision_log={"enabled": False},
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def predict(client: TestClient, headers: dict[str, str]):
    return client.post("/v1/models/dense:predict", json=records_body(), headers=headers)


def test_a_token_whose_sub_names_an_api_key_has_its_own_bucket(secured_app) -> None:
    client = secured_app({"default": "2/minute"})
    as_key = {"x-api-key": KEY}
    assert [predict(client, as_key).status_code for _ in range(3)] == [200, 200, 429]
    as_token = {"authorization": f"Bearer {bearer(sub='alice')}"}
    answer = predict(client, as_token)
    assert answer.status_code == 200  # the key's spent bucket is not the token's
    assert answer.headers["ratelimit-remaining"] == "1"
    assert "'key:alice'" in predict(client, as_key).json()["error"]
    assert predict(client, as_token).status_code == 200
    assert "'jwt:alice'" in predict(client, as_token).json()["error"]


def test_a_per_client_limit_applies_only_to_the_kind_it_names(secured_app) -> None:
    client = secured_app({"default": "3/minute", "per_client": {"key:alice": "1/minute"}})
    as_key = {"x-api-key": KEY}
    assert [predict(client, as_key).status_code for _ in range(2)] == [200, 429]
    as_token = {"authorization": f"Bearer {bearer(sub='alice')}"}
    assert predict(client, as_token).headers["ratelimit-limit"] == "3"  # the default, not alice's


@pytest.mark.parametrize("subject", ["", None], ids=["empty", "missing"])
def test_a_token_with_an_empty_or_missing_sub_is_401(secured_app, subject) -> None:
    client = secured_app()
    response = predict(client, {"authorization": f"Bearer {bearer(sub=subject)}"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_401_bodies_name_neither_the_issuer_nor_the_audience(secured_app) -> None:
    client = secured_app()
    attempts = [
        {},
        {"x-api-key": "not-a-key"},
        {"authorization": f"Bearer {bearer(aud='someone-else')}"},
        {"authorization": f"Bearer {bearer(iss='https://mallory.example')}"},
        {"authorization": f"Bearer {bearer(exp=time.time() - 60)}"},
        {"authorization": f"Bearer {bearer(sub=None)}"},
        {"authorization": "Bearer a.b.c"},
    ]
    for headers in attempts:
        for response in (predict(client, headers), client.get("/v2/models/dense", headers=headers)):
            assert response.status_code == 401, headers
            assert ISSUER not in response.text
            assert AUDIENCE not in response.text
            assert "idp.example" not in response.text


def test_with_auth_on_the_landing_page_and_404s_list_no_models(secured_app) -> None:
    client = secured_app()
    landing = client.get("/")
    assert landing.status_code == 200
    assert "dense" not in landing.text
    reader = {"x-api-key": KEY}
    not_found = [
        client.get("/v2/models/nope", headers=reader),
        client.get("/v2/models/nope/ready", headers=reader),
        client.get("/v1/models/nope", headers=reader),
        client.get("/v1/models/nope/drift", headers=reader),
        client.post("/v1/models/nope:predict", json=records_body(), headers=reader),
        client.post("/v2/models/nope/infer", json={"inputs": []}, headers=reader),
    ]
    for response in not_found:
        assert response.status_code == 404, response.text
        assert "'nope'" in response.json()["error"]
        assert "dense" not in response.text
    no_version = client.get("/v2/models/dense/versions/9", headers=reader)
    assert no_version.status_code == 404
    assert "'2'" not in no_version.text  # the served version is not disclosed either


def test_without_auth_a_404_still_lists_the_served_models(client: TestClient) -> None:
    response = client.get("/v2/models/nope")
    assert response.status_code == 404
    assert "dense" in response.json()["error"]
    assert "dense" in client.get("/").text


def test_failed_authentications_past_the_limit_get_429_and_are_counted(secured_app) -> None:
    client = secured_app(max_failures_per_minute=3)
    wrong = {"x-api-key": "guess-0001"}
    assert [predict(client, wrong).status_code for _ in range(3)] == [401, 401, 401]
    refused = predict(client, {"x-api-key": KEY})  # even the right key: this address is blocked
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert client.get("/v2/health/live").status_code == 200  # public routes stay open
    registry = client.app.state.observability.metrics.registry

    def failures(reason: str) -> float | None:
        return registry.get_sample_value("rtserve_auth_failures_total", {"reason": reason})

    assert failures("invalid_key") == 3
    assert failures("blocked") == 1
    assert failures("expired") == 0  # every reason's series exists from the start


def test_by_default_an_address_may_fail_20_times_a_minute(secured_app) -> None:
    client = secured_app()
    statuses = [client.get("/v2/models/dense").status_code for _ in range(21)]
    assert statuses == [401] * 20 + [429]


def test_the_failure_limit_can_be_switched_off(secured_app) -> None:
    client = secured_app(max_failures_per_minute=0)
    assert {predict(client, {"x-api-key": "guess"}).status_code for _ in range(25)} == {401}
    assert predict(client, {"x-api-key": KEY}).status_code == 200


# --- the decision log's key ------------------------------------------------------------------


@pytest.fixture(params=["jsonl", pytest.param("postgresql", marks=pytest.mark.postgres)])
def decision_log(request, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "jsonl":
        yield {"directory": str(tmp_path / "decisions")}
        return
    yield {"sink": "sql", "database_url": POSTGRES}


def test_two_requests_with_one_x_request_id_get_two_distinct_decision_keys(
    dense_bundle: Path, decision_log: dict[str, Any]
) -> None:
    request_id = f"shared-{uuid.uuid4().hex[:12]}"  # a client reusing its id
    settings = Settings.load(bundles=[str(dense_bundle)], decision_log=decision_log)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            wait_ready(client)
            for _ in range(2):
                response = client.post(
                    "/v1/models/dense:predict",
                    json=records_body(rows=2),
                    headers={"x-request-id": request_id},
                )
                assert response.status_code == 200
                assert response.headers["x-request-id"] == request_id  # kept for correlation
            client.app.state.observability.decisions.flush()
        reader = (
            SqlReader(POSTGRES)
            if "database_url" in decision_log
            else JsonlReader(decision_log["directory"])
        )
        found = reader.query(DecisionQuery(request_id=request_id))
        assert len(found) == 4
        assert {d.request_id for d in found} == {request_id}
        keys = {(d.server_id, d.row) for d in found}
        assert len(keys) == 4  # no two decisions share a key
        server_ids = {d.server_id for d in found}
        assert len(server_ids) == 2
        assert request_id not in server_ids
        for server_id in server_ids:  # the server's id finds one request's rows
            rows = reader.query(DecisionQuery(request_id=server_id))
            assert [(d.server_id, d.row) for d in rows] == [(server_id, 0), (server_id, 1)]
    finally:
        if "database_url" in decision_log:
            from sqlalchemy import delete

            from rtserve.observability.decisions.sql import decisions_table, engine_for

            engine = engine_for(POSTGRES)
            with engine.begin() as connection:
                table = decisions_table
                connection.execute(delete(table).where(table.c.request_id == request_id))
            engine.dispose()
