"""The inference fast path is only faster: its answers equal those of Starlette's routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready

ROW = {"f0": 0.1, "f1": -0.2, "f2": 0.3, "f3": 1.5}
V2 = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}]
}
CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("/v1/models/dense:predict", {"instances": [ROW, ROW]}, {}),
    ("/v1/models/dense/versions/2:predict", {"instances": [ROW]}, {}),
    ("/v1/models/dense/versions/9:predict", {"instances": [ROW]}, {}),
    ("/v1/models/nope:predict", {"instances": [ROW]}, {}),
    ("/v1/models/dense:predict", {"instances": [{**ROW, "f0": "high"}]}, {}),
    ("/v1/models/dense:predict", b"{not json", {}),
    ("/v1/models/dense:predict", {"instances": [ROW]}, {"content-type": "text/plain"}),
    ("/v1/models/dense:predict", {"instances": [ROW]}, {"x-request-timeout-ms": "-4"}),
    ("/v2/models/dense/infer", V2, {}),
    ("/v2/models/dense/versions/2/infer", V2, {}),
    ("/v2/models/dense/infer", {"inputs": []}, {}),
]


@pytest.fixture(scope="module")
def client(dense_bundle: Path) -> Iterator[TestClient]:
    app = create_app(Settings.load(bundles=[str(dense_bundle)]))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def answer(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> tuple:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"content-type": "application/json", "x-request-id": "same-id", **headers}
    response = client.post(path, content=content, headers=sent)
    kept = {k: v for k, v in response.headers.items() if k not in ("date",)}
    return response.status_code, response.content, kept


def test_every_answer_is_the_same_through_starlettes_routes(client: TestClient) -> None:
    fast = [answer(client, *case) for case in CASES]
    router = client.app.state.inference_router  # type: ignore[attr-defined]
    prefixes = router._prefixes
    router._prefixes = ()  # nothing recognised: every request goes to Starlette's router
    try:
        routed = [answer(client, *case) for case in CASES]
    finally:
        router._prefixes = prefixes
    assert [status for status, _, _ in fast] == [
        200,
        200,
        404,
        404,
        422,
        400,
        415,
        400,
        200,
        200,
        400,
    ]
    assert routed == fast


def test_a_wrong_method_on_an_inference_path_is_405(client: TestClient) -> None:
    response = client.get("/v2/models/dense/infer")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_middleware_added_after_create_app_sees_inference_requests(dense_bundle: Path) -> None:
    app = create_app(Settings.load(bundles=[str(dense_bundle)]))
    seen: list[str] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope.get("path", ""))
            await self.inner(scope, receive, send)

    app.add_middleware(Spy)
    with TestClient(app) as test_client:
        wait_ready(test_client)
        response = test_client.post("/v1/models/dense:predict", json={"instances": [ROW]})
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    assert "/v1/models/dense:predict" in seen


def test_the_front_answers_with_the_request_id_it_was_given(client: TestClient) -> None:
    ok = client.post(
        "/v1/models/dense:predict", json={"instances": [ROW]}, headers={"x-request-id": "abc-1"}
    )
    refused = client.post(
        "/v1/models/dense:predict", json={"instances": [{}]}, headers={"x-request-id": "abc-2"}
    )
    assert (ok.status_code, ok.headers["x-request-id"]) == (200, "abc-1")
    assert (refused.status_code, refused.headers["x-request-id"]) == (422, "abc-2")
    assert refused.json()["request_id"] == "abc-2"


def test_both_paths_pass_the_request_trace_to_the_data_plane_and_the_access_record(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = client.app.state.inference_router  # type: ignore[attr-defined]
    recorder = router.tracker.recorder
    traces: list[Any] = []
    finished = recorder.finished

    def keep(trace: Any, end: Any) -> None:
        traces.append(trace)
        finished(trace, end)

    monkeypatch.setattr(recorder, "finished", keep)
    answer(client, "/v1/models/dense:predict", {"instances": [ROW, ROW]}, {})
    monkeypatch.setattr(router, "_prefixes", ())  # through Starlette's middleware and router
    answer(client, "/v1/models/dense:predict", {"instances": [ROW, ROW]}, {})
    facts = [(t.request_id, t.model, t.version, t.protocol, t.rows) for t in traces]
    assert facts == [("same-id", "dense", "2", "records", 2)] * 2
    assert all(t.on_wait is None for t in traces)  # the disconnect watch unhooked itself
