"""A real ``rtserve serve`` process (one worker and two) against hostile HTTP over raw sockets:
oversized and trickling headers are cut off without slowing anyone else, every error body has
``error``, ``code`` and ``field``, and a draining server tells keep-alive clients to go."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, start_server
from tests.e2e.test_fault_overload import start_slow_server
from tests.raw_http import Reader, Sender, connect, oversized_head, request

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 1.0
HEALTHZ_BUDGET_S = 0.1


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def hostile_server(
    request: pytest.FixtureRequest,
    e2e_bundles: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """The dense bundle served with a 1 s header timeout (default 16 KiB header limit)."""
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RTSERVE_LIMITS__HEADER_TIMEOUT_S", str(HEADER_TIMEOUT_S))
        server = start_server([str(e2e_bundles[1]), "--workers", str(request.param)], log)
    yield server
    assert server.stop() == 0


class HealthPoller(threading.Thread):
    """Polls ``/healthz`` on its own keep-alive connections (one per worker, likely) every
    20 ms and records each answer's latency."""

    def __init__(self, url: str, connections: int = 4) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.connections = connections
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        socks = [connect(self.url) for _ in range(self.connections)]
        readers = [Reader(sock) for sock in socks]
        try:
            while not self.done.is_set():
                for sock, reader in zip(socks, readers, strict=True):
                    started = time.perf_counter()
                    try:
                        sock.sendall(request("GET", "/healthz"))
                        response = reader.response()
                    except OSError as exc:
                        self.failures.append(repr(exc))
                        return
                    self.latencies.append(time.perf_counter() - started)
                    if response is None or response.status != 200:
                        self.failures.append(repr(response))
                        return
                time.sleep(0.02)
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("size", [1 << 20, 64 << 20], ids=["1MB", "64MB"])
def test_an_oversized_header_gets_431_promptly_while_healthz_answers_within_100ms(
    hostile_server: ServerProcess, size: int
) -> None:
    payload = oversized_head(size) + b"\r\n\r\n"  # built first: it holds this process's GIL
    poller = HealthPoller(hostile_server.url)
    poller.start()
    time.sleep(0.3)
    with connect(hostile_server.url, timeout=15) as sock:
        sender = Sender(sock, payload)
        started = time.monotonic()
        sender.start()
        response = Reader(sock).response()
        answered_after = time.monotonic() - started
        sender.join(timeout=15)
    time.sleep(0.3)
    poller.done.set()
    poller.join(timeout=10)
    print(
        f"\n{size} byte header: {response.status if response else 'closed'} after {answered_after:.2f}s; healthz max {max(poller.latencies, default=0) * 1000:.1f} ms"
    )
    if response is not None:  # a client may also just see the connection closed
        assert response.status == 431
        body = response.json()
        assert body["code"] == "header_too_large"
        assert body["field"] == "headers"
    assert answered_after < 5
    assert not poller.failures
    assert len(poller.latencies) >= 10
    assert max(poller.latencies) < HEALTHZ_BUDGET_S, sorted(poller.latencies)[-5:]


def test_headers_sent_one_byte_per_second_are_cut_after_the_header_timeout(
    hostile_server: ServerProcess,
) -> None:
    slow = [connect(hostile_server.url) for _ in range(4)]  # some reach each worker
    senders = [Sender(sock, request("GET", "/healthz"), per_byte_s=1.0) for sock in slow]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    for sock in slow:
        reader = Reader(sock)
        response = reader.response()
        if response is not None:
            assert response.status == 408
            assert response.json()["code"] == "request_timeout"
            assert response.json()["field"] == "headers"
            assert reader.at_eof(timeout=5)
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2
        sock.close()
    for sender in senders:
        sender.stop.set()


def test_a_connection_that_never_sends_is_closed_after_the_header_timeout(
    hostile_server: ServerProcess,
) -> None:
    with connect(hostile_server.url) as sock:
        started = time.monotonic()
        assert Reader(sock).response() is None
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2


ERRORS = {
    "unknown route": (request("GET", "/no/such/route"), 404, "not_found", None),
    "wrong method": (request("DELETE", "/healthz"), 405, "method_not_allowed", None),
    "wrong method on inference": (
        request("GET", "/v2/models/dense/infer"), 405, "method_not_allowed", None,
    ),
    "websocket upgrade": (
        request(
            "GET", "/no/such/route",
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
        ),
        404, "not_found", None,
    ),
    "not HTTP": (b"HELLO\r\n\r\n", 400, "malformed_request", None),
    "header too large": (
        oversized_head(20 << 10) + b"\r\n\r\n", 431, "header_too_large", "headers",
    ),
    "rank-70 shape": (
        request(
            "POST", "/v2/models/dense/infer", {"Content-Type": "application/json"},
            json.dumps({"inputs": [{"name": "input", "shape": [1] * 70, "datatype": "FP64",
                                    "data": [1.0]}]}).encode(),
        ),
        400, "malformed_request", "inputs[0].shape",
    ),
    "zero-size shape with a 2**62 dimension": (
        request(
            "POST", "/v2/models/dense/infer", {"Content-Type": "application/json"},
            json.dumps({"inputs": [{"name": "input", "shape": [0, 2**62], "datatype": "FP64",
                                    "data": []}]}).encode(),
        ),
        413, "payload_too_large", "inputs[0].shape",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"), list(ERRORS.values()), ids=list(ERRORS)
)
def test_every_error_body_from_the_server_has_error_code_and_field(
    hostile_server: ServerProcess, raw: bytes, status: int, code: str, field: str | None
) -> None:
    with connect(hostile_server.url) as sock:
        sock.sendall(raw)
        response = Reader(sock).response()
    assert response is not None
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert {"error", "code", "field"} <= set(body)
    assert (body["code"], body["field"]) == (code, field)


def test_a_non_ascii_digit_in_inference_header_content_length_is_a_400(
    hostile_server: ServerProcess,
) -> None:
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    ).encode()
    headers = {"Content-Type": "application/json", "Inference-Header-Content-Length": "\xb2"}
    with connect(hostile_server.url) as sock:
        sock.sendall(request("POST", "/v2/models/dense/infer", headers, body))
        response = Reader(sock).response()
    assert response is not None
    assert response.status == 400
    assert response.json()["field"] == "Inference-Header-Content-Length"


# --- drain ----------------------------------------------------------------------------------

DRAIN = {"server": {"drain_delay_s": 3.0, "graceful_timeout_s": 10.0}}
PREDICT = request(
    "POST",
    "/v1/models/dense:predict",
    {"Content-Type": "application/json"},
    json.dumps({"instances": [{"a": 0.1, "b": -0.4, "c": 1.2}]}).encode(),
)


def test_during_the_drain_a_keep_alive_client_is_answered_with_connection_close(
    e2e_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    server = start_slow_server(e2e_bundles[1], tmp_path / "server.log", DRAIN)
    try:
        with connect(server.url) as sock:
            reader = Reader(sock)
            sock.sendall(request("GET", "/healthz"))
            before = reader.response()
            assert before.status == 200
            assert "connection" not in before.headers  # kept alive
            # idle, as the server sees it: a signal that lands between the answer's write and
            # the end of its bookkeeping finds that request still being answered, which the
            # drain rightly closes after its answer
            time.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # well inside the drain delay
            sock.sendall(PREDICT)
            during = reader.response()
            assert during is not None
            assert during.status == 200
            assert during.headers["connection"] == "close"
            assert reader.at_eof(timeout=2)
        assert server.process.wait(timeout=20) == 0
    finally:
        server.stop(signal.SIGKILL)


def test_a_request_read_before_sigterm_is_answered_with_connection_close(
    e2e_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    server = start_slow_server(e2e_bundles[1], tmp_path / "server.log", DRAIN)
    try:
        with connect(server.url) as sock:
            reader = Reader(sock)
            sock.sendall(PREDICT)
            time.sleep(0.1)  # the model takes 0.32 s: the request is in flight
            server.process.send_signal(signal.SIGTERM)
            response = reader.response()
            assert response is not None
            assert response.status == 200
            assert response.headers["connection"] == "close"
            assert reader.at_eof(timeout=2)
        assert server.process.wait(timeout=20) == 0
    finally:
        server.stop(signal.SIGKILL)
