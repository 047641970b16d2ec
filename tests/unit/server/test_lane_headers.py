"""The lane reads a request's headers as the ASGI route does, without decoding those it skips."""

from __future__ import annotations

import itertools

import httptools
import pytest

from rtserve.observability.access import AccessRecorder
from rtserve.server.lane import Headers
from rtserve.server.middleware import RequestTracker

TRACEPARENT = b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01"
RAW = [
    (b"host", b"127.0.0.1:8080"),
    (b"content-type", b"application/json"),
    (b"x-note", b"first"),
    (b"x-note", b"second"),
    (b"x-latin", "caf\u00e9".encode("latin-1")),
]


def asgi_view(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """How the ASGI route's request reads them: lower-case names, the first of repeated ones."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}


def test_headers_read_as_the_asgi_route_reads_them():
    headers = Headers(dict(reversed(RAW)))
    assert dict(headers) == asgi_view(RAW)
    assert headers["x-note"] == "first"
    assert headers["x-latin"] == "caf\u00e9"
    assert headers.get("x-missing") is None
    assert headers.get("x-missing", "default") == "default"
    assert "content-type" in headers
    assert "x-missing" not in headers
    assert 7 not in headers
    assert len(headers) == 4
    with pytest.raises(KeyError):
        headers["x-missing"]


def test_a_name_no_header_can_have_is_simply_absent():
    """A rollout may be keyed by a header named outside latin-1: no request has it."""
    headers = Headers(dict(RAW))
    assert headers.get("x-\u7528\u6237") is None
    assert "x-\u7528\u6237" not in headers
    with pytest.raises(KeyError):
        headers["x-\u7528\u6237"]


ID_VALUES = [None, b"client-id-1", b"bad id with spaces", b"x" * 200]
TRACE_VALUES = [None, TRACEPARENT, b"00-zz", TRACEPARENT + b"0" * 40]


@pytest.mark.parametrize(
    ("request_id", "traceparent"), list(itertools.product(ID_VALUES, TRACE_VALUES))
)
def test_identifying_by_lookups_gives_what_the_loop_over_raw_headers_gives(
    request_id: bytes | None, traceparent: bytes | None
):
    tracker = RequestTracker(AccessRecorder(None))
    raw = [(b"host", b"h")]
    if request_id is not None:
        raw.append((b"x-request-id", request_id))
    if traceparent is not None:
        raw.append((b"traceparent", traceparent))
    by_loop = tracker.identify(raw)
    by_lookups = tracker.identify_distinct(dict(raw), by_loop.started)
    assert by_lookups.traceparent == by_loop.traceparent
    assert by_lookups.started == by_loop.started
    if request_id == b"client-id-1":
        assert by_lookups.request_id == by_loop.request_id == "client-id-1"
    else:  # each draws a fresh one
        assert by_lookups.request_id != by_loop.request_id
        assert len(by_lookups.request_id) == len(by_loop.request_id) == 32


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"0.9", None, False),
        (b"2.0", None, False),
    ],
)
def test_httptools_keeps_only_http_1_1_alive_without_a_connection_header(
    version: bytes, connection: bytes | None, keep_alive: bool
):
    """What ``RecordsLane.take`` relies on (at the end of the head, where it runs) to skip the
    version check of such a request."""
    seen: list[tuple[bool, str]] = []

    class Callbacks:
        def on_headers_complete(self) -> None:
            seen.append((parser.should_keep_alive(), parser.get_http_version()))

    parser = httptools.HttpRequestParser(Callbacks())
    head = b"POST /x HTTP/" + version + b"\r\ncontent-length: 0\r\n"
    if connection is not None:
        head += b"connection: " + connection + b"\r\n"
    parser.feed_data(head + b"\r\n")
    assert seen == [(keep_alive, version.decode())]
