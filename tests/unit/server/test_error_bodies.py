"""Every error body carries ``error``, ``code`` and ``field`` (null when no field applies),
whichever layer answers: a route, the inference fast path, the router (404/405), or the
connection itself (``raw_error_response``)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

import rtserve
from rtserve.errors import (
    FieldViolation,
    HeaderTooLargeError,
    MalformedRequestError,
    NotFoundError,
    RequestTimeoutError,
    RtserveError,
    ValidationError,
)
from rtserve.server.app import create_app
from rtserve.server.error_handlers import raw_error_response, status_for
from rtserve.settings import Settings

KEYS = {"error", "code", "field"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny all-numeric model ``m`` (columns a, b)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    path = tmp_path_factory.mktemp("bundles") / "m-1"
    model = LogisticRegression().fit(X, (X.a > 0).astype(int))
    rtserve.build(model, X, name="m", version="1", optimize="off").save(path)
    return path


@contextlib.contextmanager
def _serving(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "model not ready"
            time.sleep(0.05)
        yield test_client


@pytest.fixture(scope="module")
def client(bundle: Path) -> Iterator[TestClient]:
    """The app serving ``m`` with a 4 KiB body limit."""
    with _serving(Settings.load(bundles=[str(bundle)], limits__max_body_bytes=4096)) as test_client:
        yield test_client


def _v2(shape: Any, data: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP64", "data": data}]}


CASES = {
    "unknown route": ("GET", "/no/such/route", None, {}, 404, "not_found", None),
    "wrong method on a Starlette route": ("PUT", "/healthz", None, {}, 405, "method_not_allowed", None),
    "wrong method on an inference route": (
        "GET", "/v2/models/m/infer", None, {}, 405, "method_not_allowed", None,
    ),
    "unknown model (fast path)": (
        "POST", "/v2/models/nope/infer", _v2([1, 2], [1, 2]), {}, 404, "not_found", "model_name",
    ),
    "body that is not JSON (fast path)": (
        "POST", "/v2/models/m/infer", b"{", {}, 400, "malformed_request", None,
    ),
    "rank-70 shape": (
        "POST", "/v2/models/m/infer", _v2([1] * 70, [1.0]), {}, 400, "malformed_request",
        "inputs[0].shape",
    ),
    "empty shape with a 2**62 dimension": (
        "POST", "/v2/models/m/infer", _v2([0, 2**62], []), {}, 413, "payload_too_large",
        "inputs[0].shape",
    ),
    "body over the limit": (
        "POST", "/v2/models/m/infer", _v2([1, 2], [1.0] * 2000), {}, 413, "payload_too_large", "body",
    ),
    "wrong content type": (
        "POST", "/v1/models/m:predict", b"a=1", {"content-type": "text/plain"}, 415,
        "unsupported_media_type", "content-type",
    ),
    "schema violation": (
        "POST", "/v1/models/m:predict", {"instances": [{"a": "x", "b": 1.0}]}, {}, 422,
        "validation_failed", "a",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code", "field"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_every_error_body_has_error_code_and_field(
    client, method, path, body, headers, status, code, field
):
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    headers = {"content-type": "application/json", **headers} if content is not None else headers
    response = client.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text
    document = response.json()
    assert set(document) >= KEYS
    assert document["code"] == code
    assert document["field"] == field
    assert isinstance(document["error"], str)
    assert document["error"]


def test_an_error_about_no_one_field_says_field_null():
    assert NotFoundError("no model 'x'").to_dict() == {
        "error": "no model 'x'",
        "code": "not_found",
        "field": None,
    }


def test_a_validation_error_keeps_its_details_after_the_three_keys():
    error = ValidationError([FieldViolation("a", "type", "a: not a number", row=0)])
    body = error.to_dict()
    assert set(body) >= KEYS
    assert body["field"] == "a"
    assert body["violations"] == [
        {"field": "a", "rule": "type", "error": "a: not a number", "row": 0}
    ]


@pytest.mark.parametrize(
    ("error", "status", "phrase"),
    [
        (HeaderTooLargeError("too big", field="headers"), 431, b"Request Header Fields Too Large"),
        (RequestTimeoutError("too slow", field="headers"), 408, b"Request Timeout"),
        (MalformedRequestError("not HTTP"), 400, b"Bad Request"),
    ],
)
def test_a_connection_level_error_is_a_whole_json_response_that_closes(
    error: RtserveError, status: int, phrase: bytes
):
    raw = raw_error_response(error, [(b"date", b"today"), (b"connection", b"keep-alive")])
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 %d %s" % (status, phrase)
    assert status_for(error) == status
    assert b"date: today" in lines
    assert b"connection: close" in lines
    assert b"connection: keep-alive" not in lines
    assert b"content-type: application/json" in lines
    assert b"content-length: %d" % len(body) in lines
    assert json.loads(body) == error.to_dict()
    assert set(json.loads(body)) == KEYS


def test_an_inference_header_content_length_of_5000_digits_is_a_400_naming_the_header(client):
    body = json.dumps(_v2([1, 2], [1.0, 2.0])).encode()
    response = client.post(
        "/v2/models/m/infer",
        content=body,
        headers=[
            (b"content-type", b"application/json"),
            (b"inference-header-content-length", b"9" * 5000),
        ],
    )
    assert response.status_code == 400
    assert response.json()["field"] == "Inference-Header-Content-Length"


def test_the_configured_tensor_limits_reach_the_v2_decoder(bundle):
    settings = Settings.load(bundles=[str(bundle)], limits={"max_tensor_elements": 10})
    with _serving(settings) as client:
        response = client.post("/v2/models/m/infer", json=_v2([6, 2], [0.5] * 12))
    assert response.status_code == 413
    assert response.json()["field"] == "inputs[0].shape"


def test_a_new_kind_of_access_refusal_is_a_403_not_a_500():
    from rtserve.errors import AccessError
    from rtserve.server.error_handlers import status_for

    class NotOnTheAllowListError(AccessError):
        code = "not_allowed"

    assert status_for(NotOnTheAllowListError("client 10.0.0.9 is not on the allow-list")) == 403
