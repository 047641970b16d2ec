"""The bounded HTTP protocol: request heads limited in size (431) and time (408), on a real
uvicorn server on a loopback port, with a tiny ASGI app that reports what it received."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from rtserve.server.http_protocol import BoundedHttpProtocol, HeaderLimits, http_protocol
from tests.raw_http import Reader, Sender, connect, oversized_head, request

LIMIT = 2048
TIMEOUT_S = 0.5


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it read: path, header count and body length; ``/slow`` takes 1 s."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * TIMEOUT_S)
    payload = json.dumps(
        {"path": scope["path"], "headers": len(scope["headers"]), "body": len(body)}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(payload)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=0,
        http=http_protocol(HeaderLimits(max_bytes=LIMIT, timeout_s=TIMEOUT_S)),
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def _head_of(size: int, path: str = "/") -> bytes:
    """A complete GET request whose head is exactly ``size`` bytes."""
    base = request("GET", path, {"X-Pad": ""})
    return request("GET", path, {"X-Pad": "p" * (size - len(base))})


def _refusal(reader: Reader, status: int, code: str) -> None:
    response = reader.response()
    assert response is not None, "closed without an answer"
    assert response.status == status
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": response.json()["error"], "code": code, "field": "headers"}
    assert reader.at_eof(timeout=5)


# --- size -----------------------------------------------------------------------------------


def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_answered_431(port):
    with connect(port) as sock:
        sock.sendall(_head_of(LIMIT))
        assert Reader(sock).response().status == 200
    with connect(port) as sock:
        sock.sendall(_head_of(LIMIT + 1))
        _refusal(Reader(sock), 431, "header_too_large")


def test_a_head_that_never_ends_is_answered_431_after_the_limit_while_the_client_still_sends(port):
    with connect(port) as sock:
        sender = Sender(sock, oversized_head(8 << 20))  # 8 MB, sent without reading
        sender.start()
        started = time.monotonic()
        reader = Reader(sock)
        _refusal(reader, 431, "header_too_large")
        assert time.monotonic() - started < 5
        sender.join(timeout=5)


def test_a_large_body_in_the_same_read_as_a_small_head_is_not_counted_as_head(port):
    body = b"x" * (1 << 20)
    with connect(port) as sock:
        sock.sendall(request("POST", "/upload", body=body))
        response = Reader(sock).response()
    assert response.status == 200
    assert response.json()["body"] == len(body)


def test_every_request_on_a_keep_alive_connection_has_its_own_head_budget(port):
    with connect(port) as sock:
        reader = Reader(sock)
        for _ in range(5):
            sock.sendall(_head_of(LIMIT - 100))
            assert reader.response().status == 200


def test_pipelined_requests_within_the_limit_are_all_answered_in_order(port):
    with connect(port) as sock:
        sock.sendall(_head_of(LIMIT, "/slow") + _head_of(LIMIT, "/a") + _head_of(LIMIT, "/b"))
        reader = Reader(sock)
        assert [reader.response().json()["path"] for _ in range(3)] == ["/slow", "/a", "/b"]


def test_a_pipelined_oversized_head_is_not_served_and_the_earlier_answer_closes_the_connection(
    port,
):
    with connect(port) as sock:
        # The second head begins in the same read as the end of the first request.
        sock.sendall(_head_of(100, "/slow") + _head_of(LIMIT + 500, "/refused"))
        reader = Reader(sock)
        first = reader.response()
        assert first.json()["path"] == "/slow"
        assert first.headers["connection"] == "close"
        assert reader.response() is None  # closed: the oversized request got no answer


def test_a_pipelined_head_split_over_reads_is_counted_from_the_next_read(port):
    with connect(port) as sock:
        sock.sendall(_head_of(100, "/slow") + oversized_head(LIMIT // 2, "/refused"))
        time.sleep(0.1)
        sender = Sender(sock, b"a" * (4 * LIMIT))
        sender.start()
        reader = Reader(sock)
        assert reader.response().json()["path"] == "/slow"
        answered = time.monotonic()
        assert reader.response() is None
        assert time.monotonic() - answered < 1  # not uvicorn's 5 s keep-alive timeout
        sender.join(timeout=5)


# --- time -----------------------------------------------------------------------------------


def test_a_head_that_trickles_in_is_answered_408_after_the_timeout(port):
    with connect(port) as sock:
        sender = Sender(sock, _head_of(200), per_byte_s=0.05)
        sender.start()
        started = time.monotonic()
        _refusal(Reader(sock), 408, "request_timeout")
        assert TIMEOUT_S - 0.1 <= time.monotonic() - started < TIMEOUT_S + 1.5
        sender.stop.set()


def test_the_timeout_runs_again_for_each_later_head_on_a_keep_alive_connection(port):
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(_head_of(200))
        assert reader.response().status == 200
        time.sleep(2 * TIMEOUT_S)  # idle between requests: uvicorn's keep-alive timeout rules
        sock.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        _refusal(reader, 408, "request_timeout")
        assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_a_connection_that_sends_nothing_is_closed_without_an_answer_after_the_timeout(port):
    with connect(port) as sock:
        started = time.monotonic()
        reader = Reader(sock)
        assert reader.response() is None
        assert time.monotonic() - started < TIMEOUT_S + 1.5


def test_an_answer_slower_than_the_header_timeout_keeps_the_connection_alive(port):
    with connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(_head_of(200, "/slow"))
        first = reader.response()
        assert first.status == 200
        assert "connection" not in first.headers
        sock.sendall(_head_of(200, "/after"))
        assert reader.response().json()["path"] == "/after"


# --- bytes that are not HTTP ------------------------------------------------------------------


def test_bytes_that_are_not_http_get_a_json_400_without_a_field(port):
    with connect(port) as sock:
        sock.sendall(b"HELLO THERE\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 400
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["code"] == "malformed_request"
        assert body["field"] is None
        assert set(body) == {"error", "code", "field"}
        assert reader.at_eof(timeout=5)


# --- configuration ----------------------------------------------------------------------------


def test_the_protocol_factory_survives_the_pickle_that_hands_workers_their_config():
    limits = HeaderLimits(max_bytes=4096, timeout_s=1.5)
    config = uvicorn.Config("rtserve.server.app:app_from_env", http=http_protocol(limits))
    copy = pickle.loads(pickle.dumps(config))
    assert copy.http.func is BoundedHttpProtocol
    assert copy.http.keywords == {"limits": limits}


def test_header_limits_come_from_the_limits_settings():
    from rtserve.settings import Settings

    settings = Settings.load(limits={"max_header_bytes": 4096, "header_timeout_s": 2.5})
    assert HeaderLimits.from_settings(settings.limits) == HeaderLimits(4096, 2.5)
    assert HeaderLimits() == HeaderLimits(16 << 10, 10.0)
