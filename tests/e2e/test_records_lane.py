"""The records lane (``rtserve.server.lane``) against real servers over raw sockets.

rtserve's HTTP protocol hands ``POST /v1/models/{name}[/versions/{v}]:predict`` requests with a
small plain body straight to the lane, which serves the requests of one model that arrive in
one event-loop turn as one group. Only a real socket reaches it, so every specification here
runs against two ``rtserve serve`` processes serving the same bundle: one with the lane (the
default) and one with ``batching.group_requests: false``, where every request goes through
uvicorn and the ASGI app. The lane must be invisible: the same answers, in the same order, with
the same metrics, access records, request ids and authentication as the ASGI path.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import rtserve
from rtserve.demo import card_transactions, example_record, fraud_pipeline
from rtserve.guard.auth import API_KEY_HEADER, hash_key
from rtserve.guard.deadline import TIMEOUT_HEADER
from tests.e2e.conftest import ServerProcess, start_server
from tests.raw_http import Reader, connect, request

pytestmark = pytest.mark.e2e

MODEL = "fraud"
PREDICT = f"/v1/models/{MODEL}:predict"
VERSIONED = f"/v1/models/{MODEL}/versions/1:predict"
JSON_TYPE = {"Content-Type": "application/json"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: The lane serves bodies up to this size on the event loop; larger ones take the ASGI route.
LANE_MAX_BODY = 64 << 10
PREDICT_KEY = "lane-tests-predict-key"
READER_KEY = "lane-tests-read-key"
TIGHT_KEY = "lane-tests-tight-key"
TIGHT_LIMIT = 3  # requests a minute for the TIGHT_KEY client
BODY_TIMEOUT_S = 1.5  # limits.body_timeout_s of the servers (default 30)


# --- speaking HTTP/1.1 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One response exactly as sent: status line, headers in order (names lower-cased, ``date``
    left out: it is the only header allowed to differ) and the de-chunked body."""

    status_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ")[1])

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class AnswerReader(Reader):
    """``Reader`` that keeps every header in order, reads chunked bodies and skips ``100
    Continue``."""

    def answer(self) -> Answer | None:
        """The next final response, or None when the server closed the connection first."""
        while True:
            while b"\r\n\r\n" not in self.buffer:
                if not self._more():
                    return None
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            if not lines[0].split(" ")[1].startswith("1"):
                break
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        fields = dict(headers)
        if fields.get("transfer-encoding") == "chunked":
            body = self._chunked()
        else:
            body = self._exactly(int(fields.get("content-length", "0")))
        kept = tuple((name, value) for name, value in headers if name != "date")
        return Answer(lines[0], kept, body)

    def _exactly(self, length: int) -> bytes:
        while len(self.buffer) < length and self._more():
            pass
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def _chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                if not self._more():
                    return body
            size_line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            body += self._exactly(size)
            self._exactly(2)  # the chunk's CRLF
            if size == 0:
                return body


def exchange(server: ServerProcess, raw: bytes, answers: int = 1) -> list[Answer | None]:
    """Send ``raw`` in one write on a fresh connection and read ``answers`` responses."""
    with connect(server.url) as sock:
        sock.sendall(raw)
        reader = AnswerReader(sock)
        return [reader.answer() for _ in range(answers)]


def received(answer: Answer | None) -> Answer:
    """``answer``, which must have come (None: the server closed the connection instead)."""
    assert answer is not None, "the server closed the connection without an answer"
    return answer


def exchange_one(server: ServerProcess, raw: bytes) -> Answer:
    return received(exchange(server, raw)[0])


def predict_bytes(
    body: Any,
    *,
    path: str = PREDICT,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A keep-alive HTTP/1.1 predict request: JSON content type, the body (JSON-encoded unless
    already bytes) and an ``X-Request-ID``."""
    head = dict(JSON_TYPE)
    if request_id is not None:
        head["X-Request-ID"] = request_id
    head.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request("POST", path, head, data)


def handmade(lines: list[str], body: bytes = b"") -> bytes:
    """A request written line by line (request line and headers, no header added)."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(payload: bytes, size: int = 40) -> bytes:
    """``payload`` in ``Transfer-Encoding: chunked`` framing, ``size`` bytes a chunk."""
    parts = [
        b"%x\r\n%s\r\n" % (len(payload[i : i + size]), payload[i : i + size])
        for i in range(0, len(payload), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def record(**changes: Any) -> dict[str, Any]:
    """The demo transaction with ``changes`` applied (a value of ``...`` removes the field)."""
    row = {**example_record(), **changes}
    return {key: value for key, value in row.items() if value is not ...}


#: What sets clients' rows apart beyond their values, so that a group mixes rows the validator
#: treats differently: an optional field left out or null, ints for floats, an unseen category.
ROW_STYLES: list[dict[str, Any]] = [
    {},
    {"account_age_days": ...},
    {"distance_km": None},
    {"amount": 120, "account_age_days": 7},
    {"country": "ZZ"},
]


def client_rows(client: int) -> list[dict[str, Any]]:
    """Client ``client``'s own rows: 1 to 3 transactions no other client sends."""
    rows = []
    for row in range(1 + client % 3):
        values = {
            "amount": 10.0 + 7.25 * client + row,
            "hour": (client + row) % 24,
            "tx_last_24h": client % 9,
            "distance_km": 3.5 * client,
        }
        rows.append(record(**{**values, **ROW_STYLES[client % len(ROW_STYLES)]}))
    return rows


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """The same bundle served with the lane and without it (every request through ASGI)."""

    lane: ServerProcess
    asgi: ServerProcess


#: Imported by both server processes (``sitecustomize`` on their ``PYTHONPATH``): it notes on
#: stdout, so in the server's log, each group the lane serves with its requests' ids. Nothing
#: else about the server changes; the tests read it to know which requests the lane served.
PROBE = """
from rtserve.server import lane

_serve = lane.RecordsLane._serve


async def _noted(self, requests):
    ids = ",".join(r.headers.get("x-request-id", "-") for r in requests)
    print(f"LANE-GROUP {len(requests)} {ids}", flush=True)
    await _serve(self, requests)


lane.RecordsLane._serve = _noted
"""


def lane_groups(server: ServerProcess) -> list[list[str]]:
    """The request ids of each group the lane served so far (``PROBE``), oldest first."""
    groups = []
    for line in server.logs().splitlines():
        if line.startswith("LANE-GROUP "):
            _, _, ids = line.split(" ", 2)
            groups.append(ids.split(","))
    return groups


def start_pair(bundle: Path, root: Path, settings: dict[str, Any]) -> Pair:
    """Start both servers at once, with ``PROBE``; ``--config`` files tell them apart."""
    probe = root / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)

    def start(name: str, group_requests: bool) -> ServerProcess:
        config = root / f"{name}.json"  # JSON is YAML
        merged = {**settings, "batching": {"group_requests": group_requests}}
        config.write_text(json.dumps(merged))
        return start_server([str(bundle), "--config", str(config)], root / f"{name}.log")

    path = os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))
    with pytest.MonkeyPatch.context() as env, ThreadPoolExecutor(2) as pool:
        env.setenv("PYTHONPATH", path)
        lane = pool.submit(start, "lane", True)
        asgi = pool.submit(start, "asgi", False)
        return Pair(lane.result(), asgi.result())


def running_pair(bundle: Path, root: Path, settings: dict[str, Any]) -> Iterator[Pair]:
    """A module fixture's pair: started, handed out, then stopped (both must exit 0)."""
    pair = start_pair(bundle, root, settings)
    yield pair
    codes = (pair.lane.stop(), pair.asgi.stop())
    assert codes == (0, 0), f"{pair.lane.logs()[-3000:]}\n{pair.asgi.logs()[-3000:]}"


@pytest.fixture(scope="module")
def pair(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The fraud bundle with and without the lane, default settings but a short body timeout."""
    settings = {"limits": {"body_timeout_s": BODY_TIMEOUT_S}}
    yield from running_pair(e2e_bundles[0], tmp_path_factory.mktemp("lane"), settings)


@pytest.fixture(scope="module")
def auth_pair(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The pair with API keys required: one predict key, one read-only key, and one predict key
    whose client may make ``TIGHT_LIMIT`` requests a minute."""
    keys = [
        {"name": "predictor", "sha256": hash_key(PREDICT_KEY), "roles": ["predict"]},
        {"name": "reader", "sha256": hash_key(READER_KEY), "roles": ["read"]},
        {"name": "tight", "sha256": hash_key(TIGHT_KEY), "roles": ["predict"]},
    ]
    settings = {
        "auth": {"enabled": True, "api_keys": keys},
        "rate_limit": {"per_client": {"key:tight": f"{TIGHT_LIMIT}/minute"}},
        "limits": {"body_timeout_s": BODY_TIMEOUT_S},
    }
    yield from running_pair(e2e_bundles[0], tmp_path_factory.mktemp("lane-auth"), settings)


# --- 1. the same answers both ways --------------------------------------------------------------

GOOD = {"instances": [record()]}
LONG_TEXT = "x" * 5000  # over limits.max_string_length (4096), inside the lane's 64 KiB
MANY_ROWS = {"instances": [record(amount=float(i)) for i in range(400)]}  # a body over 64 KiB
GZIPPED = gzip.compress(json.dumps(GOOD).encode())
GOOD_BYTES = json.dumps(GOOD).encode()
TOO_DEEP: Any = 1
for _ in range(40):  # deeper than limits.max_json_depth (32)
    TOO_DEEP = [TOO_DEEP]

#: Requests the protocol hands to the lane: name -> the bytes, sent as they are.
LANE_CASES: dict[str, bytes] = {
    "one row": predict_bytes(GOOD, request_id="same-one-row"),
    "several rows": predict_bytes(
        {"instances": [record(amount=a) for a in (1.0, 250.0, 9000.0)]}, request_id="same-rows"
    ),
    "versioned route": predict_bytes(GOOD, path=VERSIONED, request_id="same-versioned"),
    "unknown model": predict_bytes(
        GOOD, path="/v1/models/nope:predict", request_id="same-unknown-model"
    ),
    "unknown version": predict_bytes(
        GOOD, path=f"/v1/models/{MODEL}/versions/9:predict", request_id="same-unknown-version"
    ),
    "invalid JSON": predict_bytes(b'{"instances": [', request_id="same-invalid-json"),
    "not an object": predict_bytes([record()], request_id="same-not-object"),
    "missing instances": predict_bytes({"rows": [record()]}, request_id="same-no-instances"),
    "instances not a list": predict_bytes({"instances": record()}, request_id="same-not-list"),
    "empty instances": predict_bytes({"instances": []}, request_id="same-empty"),
    "wrong field type": predict_bytes(
        {"instances": [record(amount="lots")]}, request_id="same-wrong-type"
    ),
    "float for an int field": predict_bytes(
        {"instances": [record(hour=3.5)]}, request_id="same-float-int"
    ),
    "whole float for an int field": predict_bytes(
        {"instances": [record(hour=3.0)]}, request_id="same-whole-float-int"
    ),
    "int for a float field": predict_bytes(
        {"instances": [record(amount=250)]}, request_id="same-int-float"
    ),
    "int past 64 bits": predict_bytes(
        {"instances": [record(tx_last_24h=2**70)]}, request_id="same-int-past-64"
    ),
    "repeated field, last good": predict_bytes(
        ('{"instances": [{"amount": "x", ' + json.dumps(record())[1:] + "]}").encode(),
        request_id="same-repeated-field",
    ),
    "null in a required field": predict_bytes(
        {"instances": [record(amount=None)]}, request_id="same-null-required"
    ),
    "null in an optional field": predict_bytes(
        {"instances": [record(distance_km=None)]}, request_id="same-null-optional"
    ),
    "missing required field": predict_bytes(
        {"instances": [record(hour=...)]}, request_id="same-missing-field"
    ),
    "unknown field": predict_bytes(
        {"instances": [record(coupon="SPRING")]}, request_id="same-unknown-field"
    ),
    "bad third row": predict_bytes(
        {"instances": [record(), record(), record(tx_last_24h="many")]},
        request_id="same-bad-third-row",
    ),
    "string over the length limit": predict_bytes(
        {"instances": [record(merchant_category=LONG_TEXT)]}, request_id="same-long-string"
    ),
    "unseen category": predict_bytes(
        {"instances": [record(country="ZZ")]}, request_id="same-unseen"
    ),
    "parameters": predict_bytes(
        {"instances": [record()], "parameters": {"explain": False}}, request_id="same-parameters"
    ),
    "too deep JSON": predict_bytes(
        {"instances": [record()], "parameters": {"deep": TOO_DEEP}}, request_id="same-deep"
    ),
    "unknown top-level key": predict_bytes(
        {"instances": [record()], "note": "x"}, request_id="same-top-level-key"
    ),
    "too deep unknown top-level key": predict_bytes(
        {"instances": [record()], "note": TOO_DEEP}, request_id="same-deep-top-level-key"
    ),
    "wrong content type": predict_bytes(
        GOOD, request_id="same-content-type", headers={"Content-Type": "text/plain"}
    ),
    "content type with charset": predict_bytes(
        GOOD, request_id="same-charset", headers={"Content-Type": "application/json; charset=utf-8"}
    ),
    "no content type": request("POST", PREDICT, {"X-Request-ID": "same-no-ctype"}, GOOD_BYTES),
    "bad deadline header": predict_bytes(
        GOOD, request_id="same-bad-deadline", headers={TIMEOUT_HEADER: "soon"}
    ),
    "zero deadline header": predict_bytes(
        GOOD, request_id="same-zero-deadline", headers={TIMEOUT_HEADER: "0"}
    ),
    "good deadline header": predict_bytes(
        GOOD, request_id="same-deadline", headers={TIMEOUT_HEADER: "5000"}
    ),
    "traceparent": predict_bytes(
        GOOD, request_id="same-traceparent", headers={"traceparent": TRACEPARENT}
    ),
    "connection close": predict_bytes(
        GOOD, request_id="same-close", headers={"Connection": "close"}
    ),
    "repeated request id (first wins)": predict_bytes(
        GOOD, request_id="same-first-id", headers={"x-request-id": "same-second-id"}
    ),
}
#: Requests the lane leaves to uvicorn and the ASGI route on the lane server too.
ASGI_CASES: dict[str, bytes] = {
    "gzip body": predict_bytes(
        GZIPPED, request_id="same-gzip", headers={"Content-Encoding": "gzip"}
    ),
    "chunked body": handmade(
        [
            f"POST {PREDICT} HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            "X-Request-ID: same-chunked",
            "Transfer-Encoding: chunked",
        ],
        chunked(GOOD_BYTES),
    ),
    "query string": predict_bytes(GOOD, path=f"{PREDICT}?debug=1", request_id="same-query"),
    "escaped path": predict_bytes(
        GOOD, path="/v1/models/fr%61ud:predict", request_id="same-escaped"
    ),
    "body over 64 KiB": predict_bytes(MANY_ROWS, request_id="same-large"),
    "empty body": predict_bytes(b"", request_id="same-empty-body"),
    "expect 100-continue": predict_bytes(
        GOOD, request_id="same-expect", headers={"Expect": "100-continue"}
    ),
    "HTTP/1.0": handmade(
        [
            f"POST {PREDICT} HTTP/1.0",
            "Content-Type: application/json",
            "X-Request-ID: same-http10",
            f"Content-Length: {len(GOOD_BYTES)}",
        ],
        GOOD_BYTES,
    ),
    "HTTP/1.0 keep-alive": handmade(
        [
            f"POST {PREDICT} HTTP/1.0",
            "Content-Type: application/json",
            "X-Request-ID: same-http10-keep-alive",
            "Connection: keep-alive",
            f"Content-Length: {len(GOOD_BYTES)}",
        ],
        GOOD_BYTES,
    ),
    "wrong method": request("PUT", PREDICT, {"X-Request-ID": "same-put"}, GOOD_BYTES),
}
MATRIX = {**LANE_CASES, **ASGI_CASES}


@pytest.mark.parametrize("raw", list(MATRIX.values()), ids=list(MATRIX))
def test_every_request_gets_byte_for_byte_the_answer_the_asgi_route_gives(
    pair: Pair, raw: bytes
) -> None:
    """Status line, every header (but ``date``) in order, and body are identical with the
    lane on and off, for good requests, every kind of bad one, and those the lane leaves to the
    ASGI route (gzip, chunked, query string, escaped path, large body, HTTP/1.0, ...)."""
    lane, asgi = exchange_one(pair.lane, raw), exchange_one(pair.asgi, raw)
    assert same_allow_order(lane) == same_allow_order(asgi)


def same_allow_order(answer: Answer) -> Answer:
    """``answer`` with the methods of ``Allow`` sorted: Starlette lists a route's methods from a
    set, in an order that differs from process to process (a 405 from the ASGI app)."""
    headers = tuple(
        (k, ", ".join(sorted(v.split(", "))) if k == "allow" else v) for k, v in answer.headers
    )
    return Answer(answer.status_line, headers, answer.body)


def test_the_lane_serves_exactly_the_requests_it_can_take_whole(pair: Pair) -> None:
    """On the lane server, every request of ``LANE_CASES`` (good or bad) is served by the lane
    and none of ``ASGI_CASES`` (a gzip or chunked body, a query string, an escaped path, a body
    over 64 KiB, an empty body, ``Expect``, HTTP/1.0 with or without keep-alive, another
    method); with
    ``group_requests: false`` the lane serves nothing."""
    for name, raw in MATRIX.items():
        before = len(lane_groups(pair.lane))
        exchange_one(pair.lane, raw)
        served = len(lane_groups(pair.lane)) - before
        assert served == (name in LANE_CASES), name
    exchange_one(pair.asgi, LANE_CASES["one row"])
    assert lane_groups(pair.asgi) == []


#: What each request of the matrix gets (the statuses the comparison above is about).
MATRIX_STATUS = {
    **dict.fromkeys(MATRIX, 200),
    "unknown model": 404,
    "unknown version": 404,
    "invalid JSON": 400,
    "not an object": 400,
    "missing instances": 400,
    "instances not a list": 400,
    "empty instances": 400,
    "wrong field type": 422,
    "float for an int field": 422,
    "int past 64 bits": 422,
    "null in a required field": 422,
    "missing required field": 422,
    "unknown field": 422,
    "bad third row": 422,
    "string over the length limit": 422,
    "too deep JSON": 400,
    "too deep unknown top-level key": 400,
    "wrong content type": 415,
    "bad deadline header": 400,
    "zero deadline header": 400,
    "empty body": 400,
    "wrong method": 405,
}


def test_the_matrix_holds_successes_and_every_kind_of_refusal(pair: Pair) -> None:
    """The comparison above is not vacuous: the matrix holds 200s and 400, 404, 415 and 422
    refusals (a lane that refused everything, or answered everything, would fail it), and its
    large body is over the lane's 64 KiB while its long string is within it."""
    statuses = {name: exchange_one(pair.lane, raw).status for name, raw in MATRIX.items()}
    assert statuses == MATRIX_STATUS
    assert len(MATRIX["body over 64 KiB"]) > LANE_MAX_BODY
    assert len(MATRIX["string over the length limit"]) < LANE_MAX_BODY


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Request-ID": "not a valid id!"}],
    ids=["no request id", "invalid request id"],
)
def test_a_request_without_a_usable_id_gets_a_fresh_one_in_header_and_body_as_on_asgi(
    pair: Pair, headers: dict[str, str]
) -> None:
    """The server's fresh id appears in ``X-Request-ID`` and the body's ``request_id``; apart
    from that id, the answer is the ASGI route's."""

    def without_id(answer: Answer) -> Answer:
        fresh = answer.header("x-request-id")
        assert fresh is not None
        assert re.fullmatch(r"[0-9a-f]{32}", fresh), answer
        assert answer.json()["request_id"] == fresh
        return Answer(
            answer.status_line,
            tuple((k, "ID" if v == fresh else v) for k, v in answer.headers),
            answer.body.replace(fresh.encode(), b"ID"),
        )

    raw = request("POST", PREDICT, {**JSON_TYPE, **headers}, GOOD_BYTES)
    lane, asgi = exchange_one(pair.lane, raw), exchange_one(pair.asgi, raw)
    assert lane.status == 200
    assert without_id(lane) == without_id(asgi)


def test_a_lane_request_whose_body_arrives_in_pieces_is_answered_as_one(pair: Pair) -> None:
    """Head, then the body in three writes with pauses: one answer, the usual prediction."""
    raw = predict_bytes(GOOD, request_id="in-pieces")
    head_end = raw.index(b"\r\n\r\n") + 4
    cuts = [0, head_end, head_end + 7, head_end + 40, len(raw)]
    answers = []
    for server in (pair.lane, pair.asgi):
        with connect(server.url) as sock:
            for start, stop in itertools.pairwise(cuts):
                sock.sendall(raw[start:stop])
                time.sleep(0.05)
            answers.append(received(AnswerReader(sock).answer()))
    assert answers[0].status == 200
    assert answers[0] == answers[1]


# --- 2. grouping is invisible -------------------------------------------------------------------

CLIENTS = 64
ROUNDS = 8


def expected_predictions(server: ServerProcess) -> dict[int, list[dict[str, Any]]]:
    """Each client's predictions as the ASGI route gives them for its rows sent alone."""
    expected = {}
    for client in range(CLIENTS):
        answer = exchange_one(server, predict_bytes({"instances": client_rows(client)}))
        assert answer.status == 200, answer
        expected[client] = answer.json()["predictions"]
    return expected


Work = Callable[[int, socket.socket, AnswerReader, Callable[[], object]], None]


def run_clients(server: ServerProcess, work: Work) -> None:
    """``work(client, sock, reader, together)`` on ``CLIENTS`` keep-alive connections at once;
    ``together()`` returns when every client called it (a round starts for all at once). The
    first failure of any client is raised."""
    socks = [connect(server.url, timeout=30) for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS)

    def together() -> object:
        return barrier.wait(timeout=30)

    def run(client: int) -> None:
        try:
            work(client, socks[client], AnswerReader(socks[client]), together)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for sock in socks:
        sock.close()
    if errors:
        raise errors[0]


def access_records(server: ServerProcess, prefix: str, count: int) -> list[dict[str, Any]]:
    """The access-log records of requests whose id starts with ``prefix``, once ``count`` are
    in the server's log (it is written as requests end)."""
    deadline = time.monotonic() + 10
    while True:
        marker = f'"request_id":"{prefix}'
        found = [
            json.loads(line)
            for line in server.logs().splitlines()
            if '"rtserve.access"' in line and marker in line
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_64_concurrent_clients_each_get_the_predictions_of_their_own_rows_in_order(
    pair: Pair,
) -> None:
    """64 keep-alive clients, each sending its own 1-3 rows ``ROUNDS`` times (then 3 pipelined
    in one write): every answer is 200 with exactly the predictions the ASGI route gives those
    rows alone, and the request id of the request it answers; none is lost, each is counted
    once in the request metrics (none left in flight). The lane did group requests meanwhile
    (an access record with a batch larger than any one request)."""
    expected = expected_predictions(pair.asgi)

    def work(
        client: int, sock: socket.socket, reader: AnswerReader, together: Callable[[], object]
    ) -> None:
        body = {"instances": client_rows(client)}
        for round_ in range(ROUNDS):
            together()
            sock.sendall(predict_bytes(body, request_id=f"group-{client}-{round_}"))
            answer = received(reader.answer())
            assert answer.status == 200, answer
            assert answer.header("x-request-id") == f"group-{client}-{round_}"
            assert answer.json()["request_id"] == f"group-{client}-{round_}"
            assert answer.json()["predictions"] == expected[client], (client, round_)
        burst = [f"burst-{client}-{i}" for i in range(3)]
        sock.sendall(b"".join(predict_bytes(body, request_id=rid) for rid in burst))
        for rid in burst:
            answer = received(reader.answer())
            assert answer.status == 200, (rid, answer)
            assert answer.header("x-request-id") == rid
            assert answer.json()["predictions"] == expected[client], rid

    before = metrics(pair.lane)
    run_clients(pair.lane, work)
    answered = CLIENTS * (ROUNDS + 3)  # counted once each, in groups: none twice, none lost
    assert increase(before, metrics(pair.lane)) == {
        PREDICT_200: answered,
        PREDICT_SECONDS: answered,
    }
    grouped = access_records(pair.lane, "group-", CLIENTS * ROUNDS)
    assert len(grouped) == CLIENTS * ROUNDS
    assert {r["status"] for r in grouped} == {200}
    groups = [ids for ids in lane_groups(pair.lane) if any(i.startswith("group-") for i in ids)]
    served = sorted(i for ids in groups for i in ids if i.startswith("group-"))
    assert served == sorted(r["request_id"] for r in grouped)  # the lane served each, once
    assert max(map(len, groups)) > 1, "the lane never grouped two requests"


def test_a_bad_request_among_concurrent_good_ones_gets_its_own_422_and_they_their_200(
    pair: Pair,
) -> None:
    """In each round all 64 clients send at once; one of them sends a bad request: a row whose
    ``amount`` is not a number, a second row that lacks ``hour``, or a string over the length
    limit. Each bad request gets the very 422 it gets alone from the ASGI route (its own field,
    its own row index), every other request its own 200."""
    expected = expected_predictions(pair.asgi)
    bad_bodies = {
        "amount": {"instances": [record(amount="x")]},
        "hour": {"instances": [record(), record(hour=...)]},
        "long": {"instances": [record(merchant_category=LONG_TEXT)]},
    }
    alone = {
        kind: exchange_one(pair.asgi, predict_bytes(body, request_id=f"bad-{kind}"))
        for kind, body in bad_bodies.items()
    }
    assert {answer.status for answer in alone.values()} == {422}
    assert "row 0" in alone["amount"].json()["error"]
    assert "row 1" in alone["hour"].json()["error"]
    assert alone["long"].json()["field"].startswith("merchant_category")
    bad_clients = {0: "amount", 31: "hour", 63: "long", 17: "amount", 40: "hour", 5: "long"}

    def work(
        client: int, sock: socket.socket, reader: AnswerReader, together: Callable[[], object]
    ) -> None:
        for round_, (bad_client, kind) in enumerate(bad_clients.items()):
            together()
            if client == bad_client:
                sock.sendall(predict_bytes(bad_bodies[kind], request_id=f"bad-{kind}"))
                assert reader.answer() == alone[kind], (client, round_)
            else:
                rid = f"mixed-{client}-{round_}"
                sock.sendall(predict_bytes({"instances": client_rows(client)}, request_id=rid))
                answer = received(reader.answer())
                assert answer.status == 200, (rid, answer)
                assert answer.json()["predictions"] == expected[client], rid

    run_clients(pair.lane, work)
    shared = [
        ids
        for ids in lane_groups(pair.lane)
        if any(i.startswith("bad-") for i in ids) and any(i.startswith("mixed-") for i in ids)
    ]
    assert shared, "no bad request was ever served in one group with good ones"


def test_a_request_whose_deadline_passed_fails_alone_among_concurrent_good_ones(
    pair: Pair,
) -> None:
    """In each round all 64 clients send at once and one of them allows its request 1 µs
    (``x-request-timeout-ms: 0.001``): that request gets 504 ``deadline_exceeded``, as it
    does alone on the ASGI route, and every other request of the round, grouped with it or
    not, gets its own 200 (one client's deadline is not its neighbours')."""
    expected = expected_predictions(pair.asgi)
    hurried_clients = [3, 30, 62, 47]
    hurried = {"instances": [record()]}
    tiny = {TIMEOUT_HEADER: "0.001"}
    alone = exchange_one(pair.asgi, predict_bytes(hurried, request_id="hurried", headers=tiny))
    assert alone.status == 504
    assert alone.json()["code"] == "deadline_exceeded"
    outcomes: dict[str, int] = {}

    def work(
        client: int, sock: socket.socket, reader: AnswerReader, together: Callable[[], object]
    ) -> None:
        for round_, hurried_client in enumerate(hurried_clients):
            together()
            if client == hurried_client:
                rid = f"hurried-{round_}"
                sock.sendall(predict_bytes(hurried, request_id=rid, headers=tiny))
            else:
                rid = f"patient-{client}-{round_}"
                sock.sendall(predict_bytes({"instances": client_rows(client)}, request_id=rid))
            answer = received(reader.answer())
            outcomes[rid] = answer.status
            if client == hurried_client:
                assert answer.status == 504, answer
                assert answer.json()["code"] == "deadline_exceeded"
                assert answer.json()["field"] == TIMEOUT_HEADER
            elif answer.status == 200:
                assert answer.json()["predictions"] == expected[client], rid

    run_clients(pair.lane, work)
    failed = sorted(
        rid for rid, status in outcomes.items() if rid.startswith("patient-") and status != 200
    )
    assert failed == [], f"{len(failed)} requests with the default deadline failed: {failed[:8]}"
    shared = [
        ids
        for ids in lane_groups(pair.lane)
        if any(i.startswith("hurried-") for i in ids) and any(i.startswith("patient-") for i in ids)
    ]
    assert shared, "no hurried request was ever served in one group with others"


def test_concurrent_requests_of_many_rows_each_get_their_own_rows_predictions(
    pair: Pair,
) -> None:
    """64 clients at once, each with 80 rows of its own (groups of thousands of rows, beyond
    the batcher's 256): each gets exactly its 80 predictions, as the ASGI route gives them."""
    rows = 80

    def many(client: int) -> dict[str, Any]:
        return {"instances": [record(amount=client * 1000.0 + i, hour=i % 24) for i in range(rows)]}

    expected = {}
    for client in range(CLIENTS):
        answer = exchange_one(pair.asgi, predict_bytes(many(client)))
        expected[client] = answer.json()["predictions"]

    def work(
        client: int, sock: socket.socket, reader: AnswerReader, together: Callable[[], object]
    ) -> None:
        for round_ in range(2):
            together()
            rid = f"many-{client}-{round_}"
            sock.sendall(predict_bytes(many(client), request_id=rid))
            answer = received(reader.answer())
            assert answer.status == 200, (rid, answer)
            assert answer.json()["predictions"] == expected[client], rid

    run_clients(pair.lane, work)
    sizes = [len(ids) for ids in lane_groups(pair.lane) if ids[0].startswith("many-")]
    assert max(sizes) * rows > 256, f"no group was larger than one batch: {sizes}"


# --- 3. HTTP semantics --------------------------------------------------------------------------


def test_a_lane_request_pipelined_with_a_health_check_is_answered_first(pair: Pair) -> None:
    """One write holding a predict request and ``GET /v2/health/ready``: the prediction comes
    first, then the health answer, both on the same connection."""
    raw = predict_bytes(GOOD, request_id="pipe-first") + request("GET", "/v2/health/ready")
    prediction, health = map(received, exchange(pair.lane, raw, answers=2))
    assert prediction.status == 200
    assert prediction.json()["request_id"] == "pipe-first"
    assert prediction.json()["predictions"] == exchange_one(pair.asgi, raw).json()["predictions"]
    assert health.status == 200
    assert health.header("content-type") == "application/json"


@pytest.mark.parametrize("count", [2, 5])
def test_pipelined_lane_requests_are_answered_in_order(pair: Pair, count: int) -> None:
    """``count`` predict requests in one write, each with different rows: the answers come in
    the order asked, each with its own request id and predictions, as on the ASGI route."""
    raw = b"".join(
        predict_bytes({"instances": client_rows(i)}, request_id=f"pipe-{count}-{i}")
        for i in range(count)
    )
    lane, asgi = exchange(pair.lane, raw, count), exchange(pair.asgi, raw, count)
    assert [a.header("x-request-id") if a else None for a in lane] == [
        f"pipe-{count}-{i}" for i in range(count)
    ]
    assert lane == asgi


def test_a_health_check_pipelined_before_a_lane_request_keeps_its_place(pair: Pair) -> None:
    """``GET /v2/health/ready`` then a predict request in one write: health first."""
    raw = request("GET", "/v2/health/ready") + predict_bytes(GOOD, request_id="pipe-second")
    health, prediction = map(received, exchange(pair.lane, raw, answers=2))
    assert health.status == 200
    assert prediction.json()["request_id"] == "pipe-second"


def test_requests_pipelined_after_connection_close_are_not_answered(pair: Pair) -> None:
    """A lane request with ``Connection: close`` and another request behind it in one write:
    the first is answered, then the connection closes, as on the ASGI route."""
    raw = predict_bytes(GOOD, request_id="pipe-close", headers={"Connection": "close"})
    raw += predict_bytes(GOOD, request_id="pipe-after-close")
    lane, asgi = exchange(pair.lane, raw, 2), exchange(pair.asgi, raw, 2)
    assert received(lane[0]).header("x-request-id") == "pipe-close"
    assert lane[1] is None
    assert lane == asgi


def test_connection_close_gets_the_answer_then_eof(pair: Pair) -> None:
    """A lane request with ``Connection: close`` is answered (saying ``connection: close``)
    and the server then closes the connection."""
    with connect(pair.lane.url) as sock:
        sock.sendall(predict_bytes(GOOD, request_id="closing", headers={"Connection": "close"}))
        reader = AnswerReader(sock)
        answer = received(reader.answer())
        assert answer.status == 200
        assert answer.header("connection") == "close"
        assert reader.at_eof(timeout=5)


def test_keep_alive_serves_lane_and_other_requests_one_after_another(pair: Pair) -> None:
    """One connection alternating lane requests, a bad lane request and other routes: each
    answered, the connection kept open throughout."""
    sequence = [
        (predict_bytes(GOOD, request_id="ka-1"), 200),
        (request("GET", "/v2/health/live"), 200),
        (predict_bytes({"instances": [record(amount="x")]}, request_id="ka-2"), 422),
        (predict_bytes(GOOD, path=f"{PREDICT}?q=1", request_id="ka-3"), 200),
        (predict_bytes(GOOD, path=VERSIONED, request_id="ka-4"), 200),
        (predict_bytes(b"nope", request_id="ka-5"), 400),
        (predict_bytes(GOOD, request_id="ka-6"), 200),
    ]
    with connect(pair.lane.url) as sock:
        reader = AnswerReader(sock)
        for raw, status in sequence:
            sock.sendall(raw)
            answer = received(reader.answer())
            assert answer.status == status, (raw[:60], answer)


KEEP_ALIVE_S = 1.0


@pytest.fixture(scope="module")
def short_keep_alive_pair(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The pair closing idle keep-alive connections after ``KEEP_ALIVE_S``."""
    settings = {"server": {"keep_alive_s": KEEP_ALIVE_S}}
    yield from running_pair(e2e_bundles[0], tmp_path_factory.mktemp("lane-idle"), settings)


@pytest.mark.parametrize("side", ["lane", "asgi"])
def test_an_idle_connection_is_closed_keep_alive_s_after_its_last_answer(
    short_keep_alive_pair: Pair, side: str
) -> None:
    """Requests 0.6 s apart keep a connection open well past ``server.keep_alive_s``; once
    idle, it is closed that long after its last answer (not before), on the lane as on the
    ASGI route."""
    server = getattr(short_keep_alive_pair, side)
    with connect(server.url) as sock:
        reader = AnswerReader(sock)
        for i in range(4):
            if i:
                time.sleep(0.6 * KEEP_ALIVE_S)
            sock.sendall(predict_bytes(GOOD, request_id=f"idle-{side}-{i}"))
            assert received(reader.answer()).status == 200
        answered = time.monotonic()
        assert not reader.at_eof(timeout=0.7 * KEEP_ALIVE_S), "closed while not yet idle long"
        assert reader.at_eof(timeout=2 * KEEP_ALIVE_S), "still open long after keep_alive_s"
        # the server's clock started at its write, a little before this client read the answer
        assert time.monotonic() - answered >= 0.9 * KEEP_ALIVE_S


def test_an_http_1_0_request_is_answered_and_the_connection_closed(pair: Pair) -> None:
    """HTTP/1.0 goes through the ASGI route: the prediction, then EOF (no keep-alive)."""
    with connect(pair.lane.url) as sock:
        sock.sendall(MATRIX["HTTP/1.0"])
        reader = AnswerReader(sock)
        answer = received(reader.answer())
        assert answer.status == 200
        assert answer.json()["request_id"] == "same-http10"
        assert len(answer.json()["predictions"]) == 1
        assert reader.at_eof(timeout=5)


def stalled_answers(pair: Pair, raw: bytes) -> list[tuple[Answer | None, float]]:
    """Each server's answer to ``raw`` sent all but its last 10 body bytes, and when it came
    (the client waits ``BODY_TIMEOUT_S + 3`` s, then takes no answer)."""
    stalled = raw[:-10]
    results = []
    for server in (pair.lane, pair.asgi):
        with connect(server.url, timeout=BODY_TIMEOUT_S + 3) as sock:
            started = time.monotonic()
            sock.sendall(stalled)
            try:
                answer = AnswerReader(sock).answer()
            except TimeoutError:
                answer = None
            results.append((answer, time.monotonic() - started))
    return results


def test_after_a_408_for_a_stalled_body_the_connection_goes_on_as_on_the_asgi_route(
    pair: Pair,
) -> None:
    """A body that stalls past the timeout gets its 408; when the rest of it comes late, with
    another request behind it, the connection gives the ASGI route's answers (or closes
    likewise)."""
    raw = predict_bytes(GOOD, request_id="late-body")
    follow = predict_bytes(GOOD, request_id="after-late-body")
    results = []
    for server in (pair.lane, pair.asgi):
        with connect(server.url, timeout=BODY_TIMEOUT_S + 3) as sock:
            sock.sendall(raw[:-10])
            reader = AnswerReader(sock)
            first = received(reader.answer())
            second: Answer | str | None
            try:
                sock.sendall(raw[-10:] + follow)
                sock.settimeout(3)
                second = reader.answer()
            except OSError as exc:  # reset, or no answer within 3 s
                second = type(exc).__name__
            results.append((first, second))
    assert results[0][0].status == 408
    assert results[0] == results[1]


def test_a_lane_request_whose_body_stalls_gets_408_after_the_body_timeout(pair: Pair) -> None:
    """A predict request whose body stops 10 bytes short: after ``limits.body_timeout_s`` the
    answer is the ASGI route's 408 ``request_timeout`` naming ``body``, not a connection held
    for as long as the client likes."""
    (lane, lane_s), (asgi, asgi_s) = stalled_answers(pair, predict_bytes(GOOD, request_id="stall"))
    assert received(asgi).status == 408
    assert asgi_s < BODY_TIMEOUT_S + 2
    assert lane == asgi, f"after {lane_s:.1f} s the lane gave {lane}"
    assert lane_s < BODY_TIMEOUT_S + 2


# --- 4. observability --------------------------------------------------------------------------

COUNTED = (
    "rtserve_requests_total",
    "rtserve_request_duration_seconds_count",
    "rtserve_validation_failures_total",
    "rtserve_requests_in_flight",
)
Sample = tuple[str, frozenset[tuple[str, str]]]


def metrics(server: ServerProcess) -> dict[Sample, float]:
    """The samples of ``COUNTED`` on ``/metrics`` (the scrape itself is not one of them)."""
    answer = exchange_one(server, request("GET", "/metrics"))
    assert answer.status == 200
    samples = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name in COUNTED and sample.labels.get("endpoint") != "metrics":
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def increase(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


PREDICT_LABELS = {
    "model": MODEL,
    "version": "1",
    "protocol": "records",
    "endpoint": "predict",
    "variant": "",
}
PREDICT_200 = ("rtserve_requests_total", frozenset({**PREDICT_LABELS, "status": "200"}.items()))
PREDICT_SECONDS = ("rtserve_request_duration_seconds_count", frozenset(PREDICT_LABELS.items()))


def test_n_lane_requests_count_n_in_metrics_and_write_one_access_record_each(pair: Pair) -> None:
    """25 lane requests on one keep-alive connection: ``rtserve_requests_total`` of the
    records predict endpoint (status 200) rises by exactly 25, and the access log holds one
    record per request id, each naming method, path, status, model, version and rows."""
    count = 25
    before = metrics(pair.lane)
    with connect(pair.lane.url) as sock:
        reader = AnswerReader(sock)
        for i in range(count):
            sock.sendall(predict_bytes(GOOD, request_id=f"counted-{i}"))
            answer = received(reader.answer())
            assert answer.status == 200
    assert increase(before, metrics(pair.lane)) == {PREDICT_200: count, PREDICT_SECONDS: count}
    found = access_records(pair.lane, "counted-", count)
    assert sorted(r["request_id"] for r in found) == sorted(f"counted-{i}" for i in range(count))
    for entry in found:
        assert (entry["method"], entry["path"], entry["status"]) == ("POST", PREDICT, 200)
        assert (entry["model"], entry["version"], entry["rows"]) == (MODEL, "1", 1)


def test_the_lane_counts_every_outcome_as_the_asgi_route_does(pair: Pair) -> None:
    """The lane-served part of the matrix sent to both servers moves ``rtserve_requests_total``
    (every status) and ``rtserve_validation_failures_total`` (by field and rule) by the same
    amounts."""
    lane_cases = [raw for name, raw in MATRIX.items() if name not in ("HTTP/1.0", "wrong method")]
    increases = []
    for server in (pair.lane, pair.asgi):
        before = metrics(server)
        for raw in lane_cases:
            exchange_one(server, raw)
        increases.append(increase(before, metrics(server)))
    assert increases[0] == increases[1]
    assert any(name == "rtserve_validation_failures_total" for name, _ in increases[0])


def test_the_access_record_of_a_lane_request_is_the_asgi_routes(pair: Pair) -> None:
    """One good and one refused request with the same ids on both servers: their access
    records hold the same fields and values (but for latency, time and process id)."""
    varying = {"latency_ms", "time", "pid"}
    for rid, body in (("record-good", GOOD), ("record-bad", {"instances": [record(hour="x")]})):
        records = []
        for server in (pair.lane, pair.asgi):
            exchange_one(server, predict_bytes(body, request_id=rid))
            (entry,) = access_records(server, rid, 1)
            records.append({k: v for k, v in entry.items() if k not in varying})
        assert records[0] == records[1]


def test_the_clients_request_id_is_echoed_in_header_and_body(pair: Pair) -> None:
    answer = exchange_one(pair.lane, predict_bytes(GOOD, request_id="client-chosen-id.42"))
    assert answer.header("x-request-id") == "client-chosen-id.42"
    assert answer.json()["request_id"] == "client-chosen-id.42"


# --- 5. authentication --------------------------------------------------------------------------

AUTH_CASES = {
    "no credentials": ({}, 401),
    "wrong key": ({API_KEY_HEADER: "not-the-key"}, 401),
    "unsupported scheme": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    "read-only key": ({API_KEY_HEADER: READER_KEY}, 403),
    "predict key": ({API_KEY_HEADER: PREDICT_KEY}, 200),
    "predict key as bearer": ({"Authorization": f"Bearer {PREDICT_KEY}"}, 200),
}


@pytest.mark.parametrize(("headers", "status"), list(AUTH_CASES.values()), ids=list(AUTH_CASES))
def test_credentials_are_checked_as_on_the_asgi_route(
    auth_pair: Pair, headers: dict[str, str], status: int
) -> None:
    """Without a key, with a wrong one or a wrong scheme: the same 401; a read-only key: the
    same 403; a predict key (header or bearer): the same 200."""
    raw = predict_bytes(GOOD, request_id=f"auth-{status}", headers=headers)
    lane, asgi = exchange_one(auth_pair.lane, raw), exchange_one(auth_pair.asgi, raw)
    assert lane.status == status, lane
    assert lane == asgi


def test_a_lane_request_needs_a_key_and_a_predict_role(auth_pair: Pair) -> None:
    """The outcomes themselves: 401 naming ``authorization`` without a key, 403 for a key
    without the predict role, 200 with the predictions for a predict key."""
    assert exchange_one(auth_pair.lane, predict_bytes(GOOD)).status == 401
    assert exchange_one(auth_pair.lane, predict_bytes(GOOD)).json()["field"] == "authorization"
    reader = predict_bytes(GOOD, headers={API_KEY_HEADER: READER_KEY})
    assert exchange_one(auth_pair.lane, reader).status == 403
    allowed = exchange_one(
        auth_pair.lane, predict_bytes(GOOD, headers={API_KEY_HEADER: PREDICT_KEY})
    )
    assert allowed.status == 200
    assert len(allowed.json()["predictions"]) == 1


def test_a_request_without_credentials_is_refused_before_its_body_arrives(
    auth_pair: Pair,
) -> None:
    """Credentials are checked before the body is read: a request without a key whose body
    has not (all) arrived gets its 401 at once, as on the ASGI route."""
    raw = predict_bytes(GOOD, request_id="no-key-stalled")
    (lane, lane_s), (asgi, asgi_s) = stalled_answers(auth_pair, raw)
    assert received(asgi).status == 401
    assert asgi_s < 1
    assert lane == asgi, f"after {lane_s:.1f} s the lane gave {lane}"


def without_reset(answer: Answer) -> Answer:
    """The answer without the headers that count down to a limit's reset (they follow each
    server's own start time)."""
    kept = tuple((k, v) for k, v in answer.headers if k not in ("ratelimit-reset", "retry-after"))
    return Answer(answer.status_line, kept, answer.body)


def test_a_rate_limited_client_is_limited_as_on_the_asgi_route(auth_pair: Pair) -> None:
    """The ``tight`` client may make ``TIGHT_LIMIT`` requests a minute: on both servers its
    first ones get 200 with the same ``RateLimit-*`` headers, then 429 (the reset time may
    differ by the servers' start; nothing else)."""
    raw = predict_bytes(GOOD, request_id="tight", headers={API_KEY_HEADER: TIGHT_KEY})

    answers = []
    for server in (auth_pair.lane, auth_pair.asgi):
        with connect(server.url) as sock:
            reader = AnswerReader(sock)
            mine = []
            for _ in range(TIGHT_LIMIT + 2):
                sock.sendall(raw)
                answer = received(reader.answer())
                mine.append(without_reset(answer))
            answers.append(mine)
    assert [a.status for a in answers[0]] == [200] * TIGHT_LIMIT + [429, 429]
    assert answers[0][0].header("ratelimit-limit") == str(TIGHT_LIMIT)
    assert answers[0] == answers[1]


# --- 6. behind a trusted proxy -------------------------------------------------------------------

FORWARDED_CLIENT = "203.0.113.7"


@pytest.fixture(scope="module")
def proxied_pair(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The pair behind a trusted proxy on loopback (as ``rtserve replicas`` runs replicas behind
    nginx), with one forwarded client allowed ``TIGHT_LIMIT`` requests a minute."""
    settings = {
        "server": {"trusted_proxies": ["127.0.0.1"]},
        "rate_limit": {"per_client": {f"ip:{FORWARDED_CLIENT}": f"{TIGHT_LIMIT}/minute"}},
    }
    yield from running_pair(e2e_bundles[0], tmp_path_factory.mktemp("lane-proxy"), settings)


def test_behind_a_trusted_proxy_the_lane_limits_the_forwarded_client(proxied_pair: Pair) -> None:
    """With ``server.trusted_proxies`` the lane still takes the requests, and a rate limit
    follows the ``X-Forwarded-For`` client as uvicorn's proxy-headers handling gives it to the
    ASGI route: the forwarded client's requests get 200 then 429 on both servers, identically,
    while another client forwarded by the same proxy is not limited."""

    limited = predict_bytes(
        GOOD, request_id="forwarded", headers={"X-Forwarded-For": FORWARDED_CLIENT}
    )
    other = predict_bytes(GOOD, request_id="other", headers={"X-Forwarded-For": "198.51.100.1"})
    answers = []
    for server in (proxied_pair.lane, proxied_pair.asgi):
        with connect(server.url) as sock:
            reader = AnswerReader(sock)
            mine = []
            for raw in [limited] * (TIGHT_LIMIT + 1) + [other]:
                sock.sendall(raw)
                mine.append(without_reset(received(reader.answer())))
            answers.append(mine)
    assert [a.status for a in answers[0]] == [200] * TIGHT_LIMIT + [429, 200]
    assert answers[0] == answers[1]
    assert any("forwarded" in group for group in lane_groups(proxied_pair.lane))
    assert lane_groups(proxied_pair.asgi) == []


# --- 7. a model whose every input is a float ----------------------------------------------------

DENSE_PREDICT = "/v1/models/dense:predict"
DENSE_ROW = {"a": 0.25, "b": -1.5, "c": 2.0}


@pytest.fixture(scope="module")
def dense_pair(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The all-float bundle (fields a, b, c) with and without the lane: the lane reads its rows
    straight into floats (``RowsDecoder``) and checks them as one matrix."""
    yield from running_pair(e2e_bundles[1], tmp_path_factory.mktemp("lane-dense"), {})


def dense_bytes(body: Any, request_id: str) -> bytes:
    return predict_bytes(body, path=DENSE_PREDICT, request_id=request_id)


def dense_raw(text: str, request_id: str) -> bytes:
    """A dense predict request whose JSON is written by hand (what ``json.dumps`` cannot say)."""
    return dense_bytes(text.encode(), request_id)


#: What sets float rows apart: ints, -0, integers past 2^53 and 2^64, the largest float, a
#: number beyond float range, NaN, null, bools, strings, missing, unknown and repeated keys,
#: parameters, several rows with one bad.
DENSE_CASES: dict[str, bytes] = {
    "floats": dense_bytes({"instances": [DENSE_ROW]}, "dense-floats"),
    "ints": dense_bytes({"instances": [{"a": 1, "b": -2, "c": 0}]}, "dense-ints"),
    "minus zero": dense_raw('{"instances": [{"a": -0, "b": -0.0, "c": 0e0}]}', "dense-zero"),
    "2^53 + 1": dense_bytes({"instances": [{**DENSE_ROW, "a": 2**53 + 1}]}, "dense-2-53"),
    "2^64 + 1": dense_bytes({"instances": [{**DENSE_ROW, "b": -(2**64) - 1}]}, "dense-2-64"),
    "largest float": dense_bytes(
        {"instances": [{**DENSE_ROW, "c": 1.7976931348623157e308}]}, "dense-largest"
    ),
    "beyond float range": dense_raw(
        '{"instances": [{"a": 1e400, "b": 0, "c": 0}]}', "dense-beyond"
    ),
    "huge integer": dense_bytes({"instances": [{**DENSE_ROW, "a": 10**400}]}, "dense-huge-int"),
    "NaN": dense_raw('{"instances": [{"a": NaN, "b": 0, "c": 0}]}', "dense-nan"),
    "null": dense_bytes({"instances": [{**DENSE_ROW, "b": None}]}, "dense-null"),
    "bool": dense_bytes({"instances": [{**DENSE_ROW, "c": True}]}, "dense-bool"),
    "numeric string": dense_bytes({"instances": [{**DENSE_ROW, "a": "1.5"}]}, "dense-string"),
    "missing field": dense_bytes({"instances": [{"a": 1.0, "b": 2.0}]}, "dense-missing"),
    "unknown field": dense_bytes({"instances": [{**DENSE_ROW, "d": 1.0}]}, "dense-unknown"),
    "repeated key, good last": dense_raw(
        '{"instances": [{"a": "x", "a": 3.5, "b": 0, "c": 0}]}', "dense-repeat-good"
    ),
    "repeated key, bad last": dense_raw(
        '{"instances": [{"a": 3.5, "a": "x", "b": 0, "c": 0}]}', "dense-repeat-bad"
    ),
    "repeated instances": dense_raw(
        '{"instances": [{"a": "x"}], "instances": [{"a": 1, "b": 2, "c": 3}]}', "dense-repeat-rows"
    ),
    "parameters": dense_bytes(
        {"instances": [DENSE_ROW], "parameters": {"explain": False}}, "dense-parameters"
    ),
    "empty parameters": dense_bytes(
        {"instances": [DENSE_ROW], "parameters": {}}, "dense-no-params"
    ),
    "null parameters": dense_bytes({"instances": [DENSE_ROW], "parameters": None}, "dense-null-p"),
    "parameters not an object": dense_bytes(
        {"instances": [DENSE_ROW], "parameters": [1]}, "dense-params-list"
    ),
    "empty instances": dense_bytes({"instances": []}, "dense-empty"),
    "rows not objects": dense_bytes({"instances": [[1.0, 2.0, 3.0]]}, "dense-row-list"),
    "several rows, third bad": dense_bytes(
        {"instances": [DENSE_ROW, DENSE_ROW, {**DENSE_ROW, "b": "many"}]}, "dense-third-bad"
    ),
    "several rows": dense_bytes(
        {"instances": [{"a": i / 7, "b": -i, "c": i * 1e-3} for i in range(50)]}, "dense-rows"
    ),
    "invalid JSON": dense_raw('{"instances": [{"a": 1.0,', "dense-invalid"),
    "too deep unknown top-level key": dense_bytes(
        {"instances": [DENSE_ROW], "note": TOO_DEEP}, "dense-deep-top-level-key"
    ),
}


@pytest.mark.parametrize("raw", list(DENSE_CASES.values()), ids=list(DENSE_CASES))
def test_float_rows_get_byte_for_byte_the_answer_the_asgi_route_gives(
    dense_pair: Pair, raw: bytes
) -> None:
    """The lane reads an all-float model's rows straight into floats; every answer (200, 400,
    422) is still the ASGI route's, byte for byte, and the lane served the request."""
    before = len(lane_groups(dense_pair.lane))
    lane, asgi = exchange_one(dense_pair.lane, raw), exchange_one(dense_pair.asgi, raw)
    assert lane == asgi
    assert len(lane_groups(dense_pair.lane)) == before + 1


def test_the_float_cases_hold_successes_and_refusals(dense_pair: Pair) -> None:
    """Not vacuous: the cases above hold 200s, 400s and 422s."""
    statuses = {
        name: exchange_one(dense_pair.lane, raw).status for name, raw in DENSE_CASES.items()
    }
    assert {statuses[n] for n in ("floats", "ints", "minus zero", "2^64 + 1", "several rows")} == {
        200
    }
    assert statuses["null"] == statuses["bool"] == statuses["several rows, third bad"] == 422
    assert statuses["invalid JSON"] == statuses["empty instances"] == 400


def test_concurrent_float_requests_with_bad_ones_among_them_each_get_their_own_answer(
    dense_pair: Pair,
) -> None:
    """All 64 clients send at once, a few of them a bad row (null, out of float range, a
    string): groups that mix good float rows with bad ones answer each request as the ASGI
    route answers it alone."""
    bodies = {
        client: (
            {"instances": [{"a": client / 3, "b": -client, "c": 1.0 + client}] * (1 + client % 3)}
            if client % 11
            else {"instances": [{**DENSE_ROW, "b": [None, "x", 10**400][client % 3]}]}
        )
        for client in range(CLIENTS)
    }
    alone = {
        client: exchange_one(dense_pair.asgi, dense_bytes(body, f"dense-alone-{client}"))
        for client, body in bodies.items()
    }
    assert {a.status for c, a in alone.items() if c % 11} == {200}
    assert {a.status for c, a in alone.items() if not c % 11} == {422}

    def work(
        client: int, sock: socket.socket, reader: AnswerReader, together: Callable[[], object]
    ) -> None:
        for _ in range(4):
            together()
            sock.sendall(dense_bytes(bodies[client], f"dense-alone-{client}"))
            assert reader.answer() == alone[client], client

    run_clients(dense_pair.lane, work)
    mixed = [
        ids
        for ids in lane_groups(dense_pair.lane)
        if {int(i.rsplit("-", 1)[1]) % 11 == 0 for i in ids if i.startswith("dense-alone-")}
        == {True, False}
    ]
    assert mixed, "no bad float request was ever served in one group with good ones"


# --- 8. a schema that ignores unknown fields ---------------------------------------------------


@pytest.fixture(scope="module")
def lenient_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A fraud bundle that ignores unknown fields, bounds the amount and imputes a missing
    merchant category, with and without the lane: the lane reads its rows typed and skips an
    unknown field, so it must bound that field's depth itself."""
    root = tmp_path_factory.mktemp("lane-lenient")
    X, y = card_transactions(500, seed=3)
    model = fraud_pipeline().set_params(model__max_iter=5).fit(X, y)
    overrides: dict[str, dict[str, Any]] = {
        "amount": {"minimum": 0},
        "merchant_category": {"missing": "impute", "impute": "grocery"},
    }
    rtserve.build(
        model, X, name=MODEL, version="1", schema_overrides=overrides, extra_fields="ignore"
    ).save(root / "lenient-1")
    yield from running_pair(root / "lenient-1", root, {})


LENIENT_CASES: dict[str, bytes] = {
    "one row": predict_bytes(GOOD, request_id="lenient-one-row"),
    "unknown field": predict_bytes(
        {"instances": [record(coupon={"code": "SPRING"})]}, request_id="lenient-unknown"
    ),
    "too deep unknown field": predict_bytes(
        {"instances": [record(coupon=TOO_DEEP)]}, request_id="lenient-deep-unknown"
    ),
    "imputed field left out": predict_bytes(
        {"instances": [record(merchant_category=...)]}, request_id="lenient-imputed"
    ),
    "imputed field null": predict_bytes(
        {"instances": [record(merchant_category=None)]}, request_id="lenient-imputed-null"
    ),
    "int at the minimum": predict_bytes(
        {"instances": [record(amount=0)]}, request_id="lenient-at-minimum"
    ),
    "int below the minimum": predict_bytes(
        {"instances": [record(), record(amount=-5)]}, request_id="lenient-below-minimum"
    ),
}
LENIENT_STATUS = {
    **dict.fromkeys(LENIENT_CASES, 200),
    "too deep unknown field": 400,
    "int below the minimum": 422,
}


@pytest.mark.parametrize("raw", list(LENIENT_CASES.values()), ids=list(LENIENT_CASES))
def test_typed_rows_of_a_lenient_schema_get_byte_for_byte_the_asgi_routes_answer(
    lenient_pair: Pair, raw: bytes
) -> None:
    """An unknown field skipped (but not past the depth limit), an imputed field left out or
    null, a bound met or missed by an int: the lane's answer is the ASGI route's."""
    before = len(lane_groups(lenient_pair.lane))
    lane, asgi = exchange_one(lenient_pair.lane, raw), exchange_one(lenient_pair.asgi, raw)
    assert lane == asgi
    assert len(lane_groups(lenient_pair.lane)) == before + 1


def test_the_lenient_cases_hold_successes_and_refusals(lenient_pair: Pair) -> None:
    statuses = {n: exchange_one(lenient_pair.lane, raw).status for n, raw in LENIENT_CASES.items()}
    assert statuses == LENIENT_STATUS
