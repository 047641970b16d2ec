"""Request limits over HTTP: body size (also after decompression), rows, strings, nesting, slow senders."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from starlette.testclient import TestClient

from rtserve.demo import example_record
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.integration.guard_support import live_server, records_body, v2_body

LIMITS = {"max_instances": 50, "max_string_length": 16, "max_json_depth": 8, "body_timeout_s": 0.5}


@pytest.fixture(scope="module")
def settings(fraud_bundle: Path, dense_bundle: Path) -> Settings:
    return Settings.load(
        bundles=[str(fraud_bundle), str(dense_bundle)],
        limits={**LIMITS, "max_body_bytes": 64 * 1024},
    )


@pytest.fixture(scope="module")
def limited(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def test_a_body_over_the_limit_is_413_naming_the_body(limited: TestClient) -> None:
    response = limited.post(
        "/v1/models/dense:predict",
        content=b"x" * (65 * 1024),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert "limit of 65536 bytes" in response.json()["error"]


def test_gzip_bodies_are_read_and_limited_after_decompression(limited: TestClient) -> None:
    body = gzip.compress(json.dumps(records_body(3)).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = limited.post("/v1/models/dense:predict", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3
    bomb = gzip.compress(b" " * (10 << 20))  # 10 MiB of spaces: ~10 KiB on the wire
    assert len(bomb) < 64 * 1024
    response = limited.post("/v1/models/dense:predict", content=bomb, headers=headers)
    assert response.status_code == 413
    assert "after decompression" in response.json()["error"]


def test_too_many_instances_or_tensor_rows_are_413(limited: TestClient) -> None:
    response = limited.post("/v1/models/dense:predict", json=records_body(51))
    assert response.status_code == 413
    assert response.json()["field"] == "instances"
    assert limited.post("/v1/models/dense:predict", json=records_body(50)).status_code == 200
    response = limited.post("/v2/models/dense/infer", json=v2_body(51))
    assert response.status_code == 413
    assert response.json()["field"] == "inputs[0].shape"


def test_a_long_string_is_422_naming_the_field(limited: TestClient) -> None:
    record = {**example_record(), "merchant_category": "e" * 17}
    response = limited.post("/v1/models/fraud:predict", json={"instances": [record]})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "merchant_category"
    assert body["violations"][0]["rule"] == "max_string_length"


def test_deeply_nested_json_is_400_before_validation(limited: TestClient) -> None:
    nested = 1
    for _ in range(10):
        nested = [nested]
    response = limited.post("/v1/models/dense:predict", json={"instances": [{"f0": nested}]})
    assert response.status_code == 400
    assert "nests" in response.json()["error"]
    assert response.json()["field"] == "body"


def test_a_bad_deadline_header_is_400_naming_it(limited: TestClient) -> None:
    response = limited.post(
        "/v1/models/dense:predict", json=records_body(), headers={"x-request-timeout-ms": "soon"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "x-request-timeout-ms"


def test_a_slow_sender_is_cut_off_with_408_while_others_are_served(settings: Settings) -> None:
    with live_server(create_app(settings)) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        address = urlparse(url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as slow:
            slow.sendall(
                b"POST /v1/models/dense:predict HTTP/1.1\r\nHost: x\r\n"
                b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"instances": ['
            )
            started = time.monotonic()
            # a well-behaved client is not held up by the slow one
            assert (
                httpx.post(f"{url}/v1/models/dense:predict", json=records_body()).status_code == 200
            )
            answer = slow.recv(4096)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
        assert 0.4 < waited < 5
