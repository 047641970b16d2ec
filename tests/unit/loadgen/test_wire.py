"""The lean HTTP/1.1 client against real loopback sockets that send scripted responses."""

from __future__ import annotations

import asyncio

import pytest

from rtserve.errors import LoadTestError
from rtserve.loadgen.wire import Connection, Endpoint, MalformedResponseError, encode_request


async def _exchange(responses, requests=1):
    """Serve ``responses`` (raw bytes, one per request) on a free port; return the client's view."""
    received: list[bytes] = []

    async def handle(reader, writer):
        for response in responses:
            received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(response)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port)
    conn = await Connection.open(endpoint)
    answers = []
    try:
        for _ in range(requests):
            answers.append(await conn.exchange(encode_request(endpoint, "/x")))
            answers.append(conn.reusable)
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()
    return answers, received


def test_content_length_bodies_are_read_exactly_and_the_connection_is_reused():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"
    answers, received = asyncio.run(_exchange([ok, missing], requests=2))
    assert answers == [(200, b"hello"), True, (404, b"{}"), True]
    assert len(received) == 2


def test_chunked_bodies_are_joined():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    answers, _ = asyncio.run(_exchange([chunked]))
    assert answers == [(200, b"abcde"), True]


def test_connection_close_marks_the_connection_spent():
    closing = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    answers, _ = asyncio.run(_exchange([closing]))
    assert answers == [(503, b""), False]


def test_a_body_without_length_ends_with_the_connection():
    answers, _ = asyncio.run(_exchange([b"HTTP/1.0 200 OK\r\n\r\nall of it"]))
    assert answers == [(200, b"all of it"), False]


def test_a_response_that_is_not_http_is_a_malformed_response():
    with pytest.raises(MalformedResponseError, match=r"not an HTTP/1\.x status line"):
        asyncio.run(_exchange([b"SSH-2.0-OpenSSH\r\n\r\n"]))


def test_requests_are_complete_keep_alive_http_11_messages():
    endpoint = Endpoint("127.0.0.1", 8080)
    post = encode_request(
        endpoint, "/v1/models/m:predict", b'{"a":1}', headers={"Authorization": "Bearer t"}
    )
    assert post == (
        b"POST /v1/models/m:predict HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nuser-agent: rtserve-bench\r\n"
        b"content-type: application/json\r\ncontent-length: 7\r\nAuthorization: Bearer t\r\n\r\n"
        b'{"a":1}'
    )
    assert encode_request(endpoint, "/healthz").startswith(b"GET /healthz HTTP/1.1\r\n")


def test_endpoints_come_from_http_urls_only():
    assert Endpoint.from_url("http://127.0.0.1:9000/ignored") == Endpoint("127.0.0.1", 9000)
    assert Endpoint.from_url("http://localhost").port == 80
    with pytest.raises(LoadTestError, match="not an http:// URL"):
        Endpoint.from_url("https://127.0.0.1:9000")
