"""The records predict route served per event-loop turn: the requests of one turn, together.

Served one at a time, a small model's request spends most of its CPU in per-request Python
around a cheap prediction: ASGI scope and messages, a task, one-record validation, one batcher
submission, one guard call. ``RecordsLane`` takes ``POST /v1/models/{name}[/versions/{v}]:predict``
requests straight from the HTTP protocol (``BoundedHttpProtocol``), before any ASGI object
exists, and serves the requests of one model that arrived in one event-loop turn as one group:
their rows are validated at once (vectorized per field), predicted by one submission to the
model's guard and batcher, encoded from one list of answer records and written to each
connection. Per request there remain the parser's callbacks, admission (deadline header,
credentials, rate limit), one JSON decode, the observers' event, the access record and a write.

Every answer is the one the ASGI route would give (a test sends the same requests both ways):
a request the group cannot take as it is (a bad body, a row that fails validation) is answered
alone, with its own error; the group's failures (shed, timed out, model error) answer each of
its requests with the mapped error. The protocol hands the lane only requests it can take
whole: HTTP/1.1, a plain ``Content-Length`` body of at most 64 KiB (the size decoded on the
event loop), no ``Expect``, ``Transfer-Encoding``, ``Content-Encoding`` or upgrade, no query
string or escaped path, and no request of the connection still unanswered; anything else goes
through uvicorn and the ASGI app as before.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, Protocol

from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.server import ServerState

from rtserve.bundle.schema import Schema
from rtserve.bundle.validator import Validator
from rtserve.engine.batcher import AdaptiveBatcher
from rtserve.engine.dataplane import OFFLOAD_BYTES, DataPlane, observed_decode, row_spans
from rtserve.engine.manager import ServedModel
from rtserve.engine.predictions import Predictions
from rtserve.engine.rollout import VARIANT_HEADER
from rtserve.errors import RtserveError, ValidationError
from rtserve.events import RequestTrace
from rtserve.guard.deadline import TIMEOUT_HEADER, Deadline
from rtserve.guard.fallback import FALLBACK_HEADER
from rtserve.guard.limits import check_json_depth, check_rows, check_strings, depth_past
from rtserve.observability.access import Finished
from rtserve.protocol import records
from rtserve.server.endpoints import ACCEPTED_TYPES, check_content_type
from rtserve.server.error_handlers import handle_rtserve_error, handle_unexpected
from rtserve.server.middleware import RequestTracker
from rtserve.server.request_guards import (
    CLIENT_CLOSED,
    Admitted,
    RequestGuards,
    admit,
    admit_now,
    rate_headers,
)
from rtserve.server.routes import InferenceRoute
from rtserve.types import Columns


class Connection(Protocol):
    """What the lane uses of the HTTP protocol that took a request (``BoundedHttpProtocol``:
    uvicorn's httptools protocol and its parser state for the request just parsed)."""

    parser: Any  # httptools.HttpRequestParser
    url: bytes
    headers: list[tuple[bytes, bytes]]
    server: tuple[str, int | None] | None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    server_state: ServerState
    tasks: set[asyncio.Task[None]]

    def lane_answered(self) -> None:
        """The answer is written: go on with the connection (pipelined request, keep-alive)."""

    async def client_host(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The request's client address (the forwarded one behind a trusted proxy)."""


logger = logging.getLogger("rtserve.server")
#: ``/v1/models/{name}:predict`` and ``/v1/models/{name}/versions/{version}:predict``, literal
#: (an escaped or otherwise unusual path takes the ASGI route, which decodes it).
_RECORDS_PATH = re.compile(
    rb"/v1/models/([A-Za-z0-9._\-]+)(?:/versions/([A-Za-z0-9._\-]+))?:predict"
)
#: A records predict URL's route, model name, version (None: the default) and path.
_Target = tuple[InferenceRoute, str, str | None, str]
#: URLs whose ``_Target`` the lane remembers (distinct model names and versions, not requests).
_MAX_TARGETS = 256
#: Request headers that need the ASGI route's handling (streaming, decompression, upgrades).
_NOT_LANE_HEADERS = frozenset((b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"))
_JSON_TYPES = ACCEPTED_TYPES["records"]
_JSON = b"application/json"
_TIMEOUT = TIMEOUT_HEADER.encode("latin-1")
_CONNECTION_CLOSE = (b"connection", b"close")
_FALLBACK = FALLBACK_HEADER.lower().encode("latin-1")
_VARIANT = VARIANT_HEADER.lower().encode("latin-1")
#: The first header lines of a 200 answer (``DataPlane.predict_records``'s, in their order):
#: filled with the body's length and the model version.
_ANSWER_HEAD = (
    b"content-type: application/json\r\ncontent-length: %d\r\nrtserve-model-version: %s\r\n"
)


class _NoEvent:
    """uvicorn sets its cycle's message event on every body chunk; nothing here waits on it."""

    __slots__ = ()

    def set(self) -> None:
        """Nothing to wake."""


_NO_EVENT = _NoEvent()


class Headers(Mapping[str, str]):
    """A request's headers as the ASGI route reads them (lower-case names, the first of repeated
    ones), each decoded only when read: most requests are served without reading any but
    the few the lane looks up as bytes."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        self.raw = raw

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value  # type: ignore[no-any-return]

    def get(self, name: str, default: Any = None) -> Any:  # without a KeyError per miss
        """The header's value, or ``default`` (also for a name no header can have)."""
        try:
            value = self.raw.get(name.encode("latin-1"))
        except UnicodeEncodeError:  # e.g. a rollout keyed by a header named outside latin-1
            return default
        return default if value is None else value.decode("latin-1")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name in self.raw)

    def __len__(self) -> int:
        return len(self.raw)


class LaneRequest:
    """One request the lane took: its route, headers and body, and the connection to answer on.

    It stands in the protocol's ``cycle`` slot while it is served, with the attributes uvicorn's
    protocol reads and writes there (``body``, ``more_body``, ``message_event``,
    ``response_complete``, ``disconnected``, ``keep_alive``), so that the protocol's body
    callbacks, pipelining, disconnect and shutdown handling apply to it unchanged.
    """

    __slots__ = (
        "body",
        "disconnected",
        "headers",
        "keep_alive",
        "message_event",
        "more_body",
        "name",
        "path",
        "protocol",
        "raw_headers",
        "response_complete",
        "route",
        "started",
        "version",
    )  # fmt: skip

    def __init__(
        self,
        protocol: Connection,
        route: InferenceRoute,
        name: str,
        version: str | None,
        path: str,
        raw_headers: list[tuple[bytes, bytes]],
        headers: Headers,
        keep_alive: bool,
    ) -> None:
        self.protocol = protocol
        self.route = route
        self.name = name
        self.version = version
        self.path = path
        self.raw_headers = raw_headers
        self.headers = headers
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.body = b""
        self.more_body = True
        self.message_event = _NO_EVENT
        self.response_complete = False
        self.disconnected = False


@dataclass(slots=True)
class _Member:
    """A request of a group once admitted and decoded."""

    request: LaneRequest
    trace: RequestTrace
    rate: dict[str, str] | None
    deadline: Deadline
    served: ServedModel  # the model version that answers it (``DataPlane.route``)
    instances: list[dict[str, Any]] = field(default_factory=list)
    #: Its rows as tuples in field order, when each value has its field's type
    #: (``RowsDecoder``); ``instances`` is then empty.
    typed: list[tuple[Any, ...]] | None = None
    decoded: float = 0.0  # perf_counter when its decoding began

    @property
    def rows(self) -> int:
        """How many rows it sent."""
        return len(self.instances) if self.typed is None else len(self.typed)

    def as_records(self) -> None:
        """Read its rows as records instead of typed rows (for the validator to report on)."""
        if self.typed is not None:
            self.instances = records.decode_predict_request(self.request.body)[0]
            self.typed = None


class RecordsLane:
    """Takes records predict requests from the protocol and serves each turn's as groups."""

    def __init__(
        self,
        *,
        plane: DataPlane,
        guards: RequestGuards,
        tracker: RequestTracker,
        routes: Sequence[InferenceRoute],
    ) -> None:
        self.plane = plane
        self.guards = guards
        self.tracker = tracker
        self.recorder = tracker.recorder
        records_routes = [r for r in routes if r.tag == "records"]
        self._unversioned = next(r for r in records_routes if "{version}" not in r.path)
        self._versioned = next(r for r in records_routes if "{version}" in r.path)
        #: A body the lane takes is decoded on the event loop: at most ``OFFLOAD_BYTES``.
        self.max_body = min(guards.limits.max_body_bytes, OFFLOAD_BYTES)
        self._pending: list[LaneRequest] = []
        self._flush_scheduled = False
        #: ``_target`` of the URLs seen: the pattern and decoding run once per URL.
        self._targets: dict[bytes, _Target] = {}
        #: Requests answered, not yet recorded (``_record_finished``, at the end of each group).
        self._finished: list[tuple[RequestTrace, Finished]] = []
        #: uvicorn's default response headers, and the same as bytes of an answer's head.
        self._defaults: list[tuple[bytes, bytes]] = []
        self._defaults_head = b""

    # --- taking requests from the protocol ----------------------------------------------------

    def take(self, protocol: Connection) -> LaneRequest | None:
        """The request whose head the protocol just parsed, if the lane can serve it whole."""
        parser = protocol.parser
        if parser.get_method() != b"POST":
            return None
        target = self._targets.get(protocol.url) or self._target(protocol.url)
        if target is None:
            return None
        # header names are lower-case (uvicorn's on_header); the first of repeated ones wins
        head = dict(reversed(protocol.headers))
        length = head.get(b"content-length", b"")
        if not length.isdigit() or not 0 < int(length) <= self.max_body:
            return None
        if not _NOT_LANE_HEADERS.isdisjoint(head):
            return None
        keep_alive = parser.should_keep_alive()
        # httptools keeps only HTTP/1.1 alive without a Connection header (1.0, 0.9 and 2.0
        # need one): the version's string is built only when the answer does not say
        if not (keep_alive and b"connection" not in head) and parser.get_http_version() != "1.1":
            return None
        route, name, version, path = target
        return LaneRequest(
            protocol,
            route,
            name,
            version,
            path,
            protocol.headers,
            Headers(head),
            keep_alive,
        )

    def _target(self, url: bytes) -> _Target | None:
        """The route, model name, version and path of a records predict URL (None for any
        other), remembered for the next request to it while fewer than ``_MAX_TARGETS`` are."""
        found = _RECORDS_PATH.fullmatch(url)
        if found is None:
            return None
        name, version = found.group(1).decode("ascii"), found.group(2)
        target = (
            self._unversioned if version is None else self._versioned,
            name,
            None if version is None else version.decode("ascii"),
            url.decode("ascii"),
        )
        if len(self._targets) < _MAX_TARGETS:
            self._targets[url] = target
        return target

    def arrived(self, request: LaneRequest) -> None:
        """The request's body is complete: serve it with the others of this loop turn."""
        request.more_body = False
        self._pending.append(request)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            request.protocol.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One task per model (and version asked for) for the requests of the turn."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        groups: dict[tuple[str, str | None], list[LaneRequest]] = {}
        for request in pending:
            groups.setdefault((request.name, request.version), []).append(request)
        for members in groups.values():
            _spawn(members[0], self._serve(members))

    # --- serving a group ------------------------------------------------------------------------

    async def _serve(self, requests: list[LaneRequest]) -> None:
        """Admit, decode, validate, predict, encode and answer one group; every request of it is
        answered exactly once, whatever fails."""
        members: list[_Member] = []
        self.recorder.started(len(requests))
        try:
            await self._admit(requests, members)
            # one group per model version and deadline budget: a request that gave itself less
            # time must not cut its neighbours' (the batcher still joins the groups' rows)
            groups: dict[tuple[int, float], list[_Member]] = {}
            for member in members:
                groups.setdefault((id(member.served), member.deadline.budget), []).append(member)
            if len(groups) == 1:
                await self._predict(members)
            else:  # at once, so that the batcher can join them
                await asyncio.gather(*(self._predict(group) for group in groups.values()))
        except Exception as exc:  # noqa: BLE001 - logged there; the clients learn nothing internal
            for member in members:
                if not member.request.response_complete:
                    await self._fail(member.request, member.trace, exc)
        finally:
            for member in members:
                member.served.inflight -= 1
            self._record_finished()

    def _record_finished(self) -> None:
        """Record the requests answered since the last call (one update per metric and one
        access-log write for a group); never raises into the lane."""
        done, self._finished = self._finished, []
        try:
            self.recorder.finished_many(done)
        except Exception:
            logger.exception("recording %d requests failed", len(done))

    async def _admit(self, requests: list[LaneRequest], members: list[_Member]) -> None:
        """Admission, content type, route and decoding of each request (what the ASGI route
        does before validation): each admitted one joins ``members``, each other is answered
        with its error. Guards that never wait admit without a coroutine (``admit_now``); without
        credentials to check, the requests that state no deadline share one admission."""
        guards = self.guards
        shared = self._admit_alike(guards)
        for request in requests:
            head = request.headers.raw
            if len(head) == len(request.raw_headers):  # no name repeats
                trace = self.tracker.identify_distinct(head, request.started)
            else:
                trace = self.tracker.identify(request.raw_headers)
                trace.started = request.started
            route = request.route
            try:
                if guards.wait:
                    host = await request.protocol.client_host(request.raw_headers)
                    admitted = await admit(
                        guards, request.headers, route.role, route.described, host
                    )
                elif shared is not None and _TIMEOUT not in request.headers.raw:
                    admitted = shared
                else:
                    admitted = admit_now(guards, request.headers, route.role, route.described)
                members.append(self._member(request, trace, admitted))
            except Exception as exc:  # noqa: BLE001 - mapped (and logged when unexpected) in _fail
                await self._fail(request, trace, exc)

    def _admit_alike(self, guards: RequestGuards) -> Admitted | None:
        """The one admission of a group's requests that state no deadline, made now (their
        deadline starts now), when neither credentials nor waiting guards tell them apart;
        None otherwise."""
        if guards.auth.enabled or guards.wait:
            return None
        return admit_now(guards, {}, self._unversioned.role, self._unversioned.described)

    def _member(self, request: LaneRequest, trace: RequestTrace, admitted: Admitted) -> _Member:
        """An admitted request routed and decoded; raises what the ASGI route would answer."""
        if request.headers.raw.get(b"content-type", _JSON) != _JSON:
            check_content_type(request.headers, _JSON_TYPES)
        plane = self.plane
        served = plane.route(request.name, request.version, trace, request.headers, request.body)
        trace.protocol = "records"
        predictor, _ = served.require_ready()
        member = _Member(
            request,
            trace,
            rate_headers(admitted.rate) if admitted.rate is not None else None,
            admitted.deadline,
            served,
        )
        limits, body = plane.limits, request.body
        member.decoded = time.perf_counter()
        # a depth limit below a row's refuses even these: the general path says so
        if limits.max_json_depth >= records.ROWS_DEPTH:
            decoder = _rows_decoder(predictor.validator)
            member.typed = decoder.decode(body)
            if member.typed is not None and (
                len(member.typed) > limits.max_instances
                or (decoder.skips_unknown and depth_past(body, limits.max_json_depth) is not None)
            ):
                member.typed = None  # the general path refuses them
        if member.typed is None:
            observed_decode(partial(self._decode_records, member), predictor.schema, trace)
        served.inflight += 1  # the version drains (a hot swap waits) until this one is answered
        return member

    def _decode_records(self, member: _Member) -> None:
        """A member's body decoded as records and bounded as the ASGI route's decoder does."""
        limits, body = self.plane.limits, member.request.body
        instances, _parameters = records.decode_predict_request(body)
        check_json_depth(body, limits.max_json_depth)
        check_rows(len(instances), limits.max_instances, "instances")
        member.instances = instances

    async def _predict(self, members: list[_Member]) -> None:
        """Validate, predict and answer the members that one model version serves."""
        served = members[0].served
        predictor, batcher = served.require_ready()
        members, columns = await self._validate(members, predictor.validator, predictor.schema)
        if not members:
            return
        spans = row_spans([member.rows for member in members])
        if served.cache is not None:  # cached answers are per request: each asks on its own
            await asyncio.gather(
                *(
                    self._predict_one(
                        served, batcher, member, {k: v[a:b] for k, v in columns.items()}
                    )
                    for member, (a, b) in zip(members, spans, strict=True)
                )
            )
            return
        group = RequestTrace(members[0].trace.request_id, members[0].trace.started)
        deadline = min((m.deadline for m in members), key=_expiry)
        plane = self.plane
        try:
            output, fallback = await plane.answer(served, batcher, columns, group, deadline)
        except Exception as exc:  # noqa: BLE001 - every member gets the mapped error
            for member in members:
                plane.fail(member.trace, exc)
                await self._fail(member.request, member.trace, exc)
            return
        answers = Predictions(output, predictor.schema.outputs).to_records()
        for member, (start, stop) in zip(members, spans, strict=True):
            trace = member.trace
            trace.rows, trace.batch = stop - start, group.batch
            trace.fallback, trace.predicted = group.fallback, group.predicted
            self._reply(served, member, answers[start:stop], fallback)
        plane.report_group(served, columns, output, [(m.trace, m.decoded) for m in members])

    async def _predict_one(
        self, served: ServedModel, batcher: AdaptiveBatcher, member: _Member, columns: Columns
    ) -> None:
        """One member predicted on its own (a model with a response cache)."""
        plane, trace = self.plane, member.trace
        try:
            output, fallback = await plane.answer(served, batcher, columns, trace, member.deadline)
        except Exception as exc:  # noqa: BLE001 - the mapped error
            plane.fail(trace, exc)
            await self._fail(member.request, trace, exc)
            return
        spec = served.require_ready()[0].schema.outputs
        self._reply(served, member, Predictions(output, spec).to_records(), fallback)
        plane.report(served, columns, output, trace, member.decoded)

    async def _validate(
        self, members: list[_Member], validator: Validator, schema: Schema
    ) -> tuple[list[_Member], Columns]:
        """The members whose rows are valid, and their columns (every row, in member order).

        All rows are validated at once; if any fails, each member is validated on its own so
        that its answer names its own rows, and the valid ones go on together. Typed rows (every
        member's: ``_Member.typed``) are checked without records; when that fails, or only some
        members' rows are typed, they are read as records and checked the usual way, which
        says what is wrong.
        """
        limits = self.plane.limits
        long_strings = any(len(m.request.body) > limits.max_string_length for m in members)
        typed = _typed_rows_of(members)
        if typed is not None:
            started = time.perf_counter()
            checked = validator.rows(typed)
            if checked is not None and long_strings:
                checked = _short_strings(checked, limits.max_string_length)
            if checked is not None:
                done = time.perf_counter()
                for member in members:
                    member.trace.validate_started, member.trace.validated = started, done
                return members, checked
        for member in members:
            member.as_records()

        def validate(instances: list[dict[str, Any]]) -> Columns:
            columns: Columns = validator.records(instances)
            if long_strings:
                check_strings(columns, limits.max_string_length)
            return columns

        if len(members) == 1:
            rows = members[0].instances
        else:
            rows = [row for m in members for row in m.instances]
        started = time.perf_counter()
        try:
            columns = validate(rows)
        except Exception:  # noqa: BLE001 - each member's own check says what and whose
            good = []
            for member in members:
                try:
                    observed_decode(partial(validate, member.instances), schema, member.trace)
                except Exception as exc:  # noqa: BLE001 - answered with the mapped error
                    await self._fail(member.request, member.trace, exc)
                else:
                    good.append(member)
            if not good:
                return [], {}
            return await self._validate(good, validator, schema)
        done = time.perf_counter()
        for member in members:
            member.trace.validate_started, member.trace.validated = started, done
        return members, columns

    def _reply(
        self,
        served: ServedModel,
        member: _Member,
        answers: list[dict[str, Any]],
        fallback: str | None,
    ) -> None:
        """Encode and write one member's answer records (with the headers of
        ``DataPlane.predict_records`` and the ASGI route, in their order)."""
        trace = member.trace
        body = records.encode_predict_rows(
            answers,
            name=served.name,
            version=served.version,
            request_id=trace.request_id,
            variant=trace.variant,
        )
        head = _ANSWER_HEAD % (len(body), served.version.encode("latin-1"))
        if fallback:
            head += b"%s: %s\r\n" % (_FALLBACK, fallback.encode("latin-1"))
        if trace.variant:
            head += b"%s: %s\r\n" % (_VARIANT, trace.variant.encode("latin-1"))
        if member.rate:
            head += _head_lines(
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in member.rate.items()
            )
        head += b"x-request-id: %s\r\n" % trace.request_id.encode("latin-1")
        self._write(member.request, trace, 200, head, body)

    # --- per request ----------------------------------------------------------------------------

    async def _fail(self, request: LaneRequest, trace: RequestTrace, exc: Exception) -> None:
        """Answer ``exc`` as the ASGI route would (same status, body and headers)."""
        scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": request.path,
            "raw_path": request.path.encode("latin-1"),
            "query_string": b"",
            "headers": [],
            "server": request.protocol.server,
            "scheme": "http",
            "root_path": "",
            "state": {"request_id": trace.request_id},
        }
        if isinstance(exc, RtserveError):
            response = await handle_rtserve_error(Request(scope), exc)
        else:
            response = await handle_unexpected(Request(scope), exc)
        head = [*response.raw_headers, (b"x-request-id", trace.request_id.encode("latin-1"))]
        if trace.version:  # routed before it failed: say which version (and variant) failed
            head.append((b"rtserve-model-version", trace.version.encode("latin-1")))
            if trace.variant:
                head.append((b"rtserve-variant", trace.variant.encode("latin-1")))
        self._write(request, trace, response.status_code, _head_lines(head), bytes(response.body))

    def _write(
        self,
        request: LaneRequest,
        trace: RequestTrace,
        status: int,
        head: bytes,
        body: bytes,
    ) -> None:
        """Write one whole answer (uvicorn's default headers, then the header lines ``head``),
        then let the protocol go on with the connection; the request is recorded with its
        group's."""
        request.response_complete = True
        protocol = request.protocol
        transport = protocol.transport
        if request.disconnected or transport.is_closing():
            self.guards.rejections["client_disconnected"] += 1
            status = CLIENT_CLOSED
        else:
            defaults = protocol.server_state.default_headers
            if defaults is not self._defaults:  # uvicorn replaces the list (each second: date)
                self._defaults = defaults
                self._defaults_head = _head_lines(defaults)
            parts = [STATUS_LINE[status], self._defaults_head, head]
            if _CONNECTION_CLOSE in defaults:  # the server drains: uvicorn closes after this
                request.keep_alive = False
            elif not request.keep_alive:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", body)
            transport.write(b"".join(parts))
            if not request.keep_alive:
                transport.close()
            protocol.lane_answered()
        self._finished.append(
            (
                trace,
                Finished("POST", request.path, "records", "predict", status, time.perf_counter()),
            )
        )


def _typed_rows_of(members: list[_Member]) -> list[tuple[Any, ...]] | None:
    """Every member's typed rows, in member order; None unless each was read so."""
    rows: list[tuple[Any, ...]] = []
    for member in members:
        if member.typed is None:
            return None
        rows += member.typed
    return rows


def _short_strings(columns: Columns, limit: int) -> Columns | None:
    """``columns`` when no string is longer than ``limit``; None otherwise (the records check
    then names the field and row)."""
    try:
        check_strings(columns, limit)
    except ValidationError:
        return None
    return columns


@lru_cache(maxsize=64)
def _rows_decoder(validator: Validator) -> records.RowsDecoder:
    """The decoder of typed rows for the validator's schema (one per validator: per model
    version served)."""
    return records.RowsDecoder(
        validator.row_fields, reject_extra=validator.schema.extra_fields == "reject"
    )


def _head_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``name: value`` header lines, each ended by CRLF."""
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def _spawn(request: LaneRequest, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` as a task among the server's (graceful shutdown waits for them)."""
    task = request.protocol.loop.create_task(work)
    tasks = request.protocol.tasks
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _expiry(deadline: Deadline) -> float:
    return deadline.expires_at
