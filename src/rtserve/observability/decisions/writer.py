"""The decision log's writer process: records built and written beside the server, off its GIL.

A decision record per predicted row costs Python work per row (the row's canonical JSON and its
sha256, its output dict, the record, its JSON line): 10–25 µs of CPU per row measured under load
(dense_lr, c=64). On the server's decision-log thread that time holds the GIL the event loop
needs, so every logged row slows the requests still being served. ``WriterProcess`` does that work
in a child process instead: the decision-log thread encodes each batch of prediction events
(numeric columns and outputs as their raw bytes, others as values, in one msgpack message) and
waits, without the GIL, for the child to answer that the batch is written. The log keeps the
thread writer's guarantees: a batch is written when ``write`` returns (``flush`` and shutdown
wait for it), a failure raises there (counted and logged as the observer's), and the records are
identical (the child rebuilds the same arrays and the same ``decisions_for`` builds them).

The child is ``python -m rtserve.observability.decisions``, started when the observer
starts, in a session of its own (a terminal's Ctrl+C goes to the server, which drains the log
and then closes the child). Batches and replies travel its stdin and stdout as length-prefixed
msgpack messages of fixed types, nothing that runs code when read; its first message says which
sink to open (the JSON-lines directory or the SQL database, never an object) and carries the
redaction key, which so never shows in a process listing. The child exits when its stdin closes,
so it never outlives the server; one that died is started again with the next batch, and the
batch that found it dead is counted as failed.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any, Literal

import msgspec
import numpy as np

from rtserve.bundle.schema import Schema
from rtserve.events import BatchInfo, PredictionEvent, RequestPart
from rtserve.observability.decisions.jsonl import JsonlSink
from rtserve.observability.decisions.record import DecisionSink, decisions_for
from rtserve.observability.decisions.sql import DecisionStoreError, SqlSink
from rtserve.observability.redaction import Redactor
from rtserve.observability.threads import name_os_thread
from rtserve.runtimes.base import ModelOutput
from rtserve.types import MatrixColumns

logger = logging.getLogger("rtserve.observability")
#: The child's name to the OS (``top``, ``ps``, the benchmark's per-thread CPU).
PROCESS_NAME = "rtserve-writer"
#: One model version's events, with the key (model, version) of its schema.
Group = tuple[tuple[str, str], list[PredictionEvent]]
#: dtype kinds sent as their raw bytes; any other array (objects, strings) is sent as values.
_RAW_KINDS = frozenset("biufcmM")
_NO_BATCH = BatchInfo(0.0, 0.0, 0, 0)
_LENGTH = struct.Struct(">I")


# --- the wire: what travels the pipes --------------------------------------------------------------


class _Config(msgspec.Struct, array_like=True):
    """The child's first message: its sink, redaction and whether inputs are recorded."""

    sink: Literal["jsonl", "sql"]
    target: str  # the JSON-lines directory or the database URL
    max_bytes: int
    max_files: int
    key: bytes
    mode: Literal["hash", "drop"]
    include_inputs: bool


class _Array(msgspec.Struct, array_like=True, gc=False):
    dtype: str
    shape: tuple[int, ...]
    data: bytes | list[Any]


class _Block(msgspec.Struct, array_like=True, gc=False):
    """Columns that are all 1-D arrays of one plain dtype and the event's length, as one block
    of bytes (field after field): a dense model's 32 columns cost one join, not 32 arrays."""

    names: list[str]
    dtype: str
    data: bytes


class _Event(msgspec.Struct, array_like=True, gc=False):
    """The fields of a ``PredictionEvent`` that decision records use."""

    request_id: str
    time: float
    model: str
    version: str
    digest: str
    protocol: str
    columns: _Block | dict[str, _Array]
    output: tuple[_Array | None, _Array | None, _Array | None]  # label, probabilities, value
    rows: int
    latency_seconds: float
    fallback: bool
    variant: str
    traceparent: str | None
    parts: list[tuple[str, int, float, str | None, float]]


class _Batch(msgspec.Struct, array_like=True, gc=False):
    schemas: dict[str, str | None]  # "model\0version" -> the schema's JSON, first use only
    groups: list[tuple[str, list[_Event]]]


class _Reply(msgspec.Struct, array_like=True):
    ok: bool
    written: int = 0
    error: str = ""


_encode = msgspec.msgpack.Encoder().encode
_decode_config = msgspec.msgpack.Decoder(_Config).decode
_decode_batch = msgspec.msgpack.Decoder(_Batch).decode
_decode_reply = msgspec.msgpack.Decoder(_Reply).decode


def _send(pipe: IO[bytes], message: bytes) -> None:
    pipe.write(_LENGTH.pack(len(message)) + message)
    pipe.flush()


def _receive(pipe: IO[bytes]) -> bytes:
    """One message; EOFError when the pipe closed before a whole one came."""
    head = pipe.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the pipe closed")
    (size,) = _LENGTH.unpack(head)
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError("the pipe closed within a message")
    return data


def _wire_array(array: Any) -> _Array | None:
    if array is None:
        return None
    if array.dtype.kind in _RAW_KINDS:
        return _Array(array.dtype.str, array.shape, np.ascontiguousarray(array).tobytes())
    return _Array(array.dtype.str, array.shape, array.ravel().tolist())


def _array(wire: _Array | None) -> Any:
    if wire is None:
        return None
    dtype = np.dtype(wire.dtype)
    if isinstance(wire.data, bytes):
        return np.frombuffer(wire.data, dtype=dtype).reshape(wire.shape)
    if dtype.kind == "O":  # each value as it was (a list stays one value)
        return np.fromiter(wire.data, dtype=object, count=len(wire.data)).reshape(wire.shape)
    return np.asarray(wire.data, dtype=dtype).reshape(wire.shape)


def _wire_columns(columns: dict[str, Any], rows: int) -> _Block | dict[str, _Array]:
    if type(columns) is MatrixColumns:  # the validator's matrix: its columns one after another
        return _Block(list(columns), columns.matrix.dtype.str, columns.matrix.T.tobytes())
    arrays = list(columns.values())
    dtype = arrays[0].dtype if arrays else None
    if dtype is not None and dtype.kind in _RAW_KINDS:
        shapes = {array.shape for array in arrays}
        if shapes == {(rows,)} and all(array.dtype == dtype for array in arrays):
            try:
                return _Block(list(columns), dtype.str, b"".join(arrays))
            except (TypeError, BufferError):  # a non-contiguous view has no plain buffer
                pass
    return {name: _wire_array(column) for name, column in columns.items()}  # type: ignore[misc]


def _columns(wire: _Block | dict[str, _Array], rows: int) -> dict[str, Any]:
    if isinstance(wire, _Block):
        block = np.frombuffer(wire.data, dtype=np.dtype(wire.dtype))
        return dict(zip(wire.names, block.reshape(len(wire.names), rows), strict=True))
    return {name: _array(column) for name, column in wire.items()}


def _wire_event(event: PredictionEvent) -> _Event:
    out = event.output
    return _Event(
        event.request_id, event.time, event.model, event.version, event.digest, event.protocol,
        _wire_columns(event.columns, event.rows),
        (_wire_array(out.label), _wire_array(out.probabilities), _wire_array(out.value)),
        event.rows, event.latency_seconds, event.fallback, event.variant, event.traceparent,
        [(p.request_id, p.rows, p.latency_seconds, p.traceparent, p.time) for p in event.parts],
    )  # fmt: skip


def _event(wire: _Event) -> PredictionEvent:
    label, probabilities, value = map(_array, wire.output)
    return PredictionEvent(
        wire.request_id, wire.time, wire.model, wire.version, wire.digest, wire.protocol,
        _columns(wire.columns, wire.rows),
        ModelOutput(label, probabilities, value),
        wire.rows, wire.latency_seconds, _NO_BATCH, wire.fallback, wire.variant,
        wire.traceparent, tuple(RequestPart(*part) for part in wire.parts),
    )  # fmt: skip


def _schema_key(model: str, version: str) -> str:
    return f"{model}\0{version}"


# --- the server's side -----------------------------------------------------------------------------


class WriterProcess:
    """Builds and writes decision records in a child process (module docstring).

    Args:
        sink: where records go (a ``JsonlSink`` or ``SqlSink``): the child opens one with the
            same settings and writes to it; this process never does.
        redactor: hashes PII values (its key goes to the child over the pipe).
        include_inputs: record the (redacted) inputs, not only their hash.
    """

    def __init__(self, sink: DecisionSink, redactor: Redactor, *, include_inputs: bool) -> None:
        if isinstance(sink, JsonlSink):
            target, max_bytes, max_files = str(sink.directory), sink.max_bytes, sink.max_files
        elif isinstance(sink, SqlSink):
            target, max_bytes, max_files = sink.url, 0, 0
        else:
            raise TypeError(f"the writer process cannot open a {type(sink).__name__}")
        self._config = _encode(
            _Config(
                sink.name,  # type: ignore[arg-type]
                target,
                max_bytes,
                max_files,
                redactor.key,
                redactor.mode,
                include_inputs,
            )
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._sent: set[str] = set()  # schemas the running child holds
        self._lock = threading.Lock()  # one batch on the pipes at a time

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child if none runs (idempotent)."""
        with self._lock:
            self._ensure_started()

    def write(self, groups: Sequence[Group], schemas: dict[tuple[str, str], Schema | None]) -> int:
        """Write the records of ``groups`` (events grouped by model version) in the child; the
        number written. ``schemas`` holds each group's schema.

        Raises:
            DecisionStoreError: the child failed to build or write them, or died.
        """
        wire_groups = [
            (_schema_key(*key), [_wire_event(event) for event in events]) for key, events in groups
        ]
        with self._lock:
            process = self._ensure_started()
            new: dict[str, str | None] = {}  # schemas this child has not had yet
            for (key, _), (name, _) in zip(groups, wire_groups, strict=True):
                if name not in self._sent:
                    schema = schemas[key]
                    new[name] = schema.model_dump_json() if schema is not None else None
            try:
                _send(process.stdin, _encode(_Batch(new, wire_groups)))  # type: ignore[arg-type]
                self._sent.update(new)
                reply = _decode_reply(_receive(process.stdout))  # type: ignore[arg-type]
            except (EOFError, OSError) as exc:
                self._stop(process, 0.0)
                raise DecisionStoreError(
                    f"the decision-log writer process died ({exc}); "
                    f"{sum(len(events) for _, events in groups)} events were not written, and a "
                    "new writer starts with the next batch (its error is in the server's log; "
                    "where no child process can run, set RTSERVE_DECISION_LOG__WRITER=thread)",
                    field="decision_log",
                ) from exc
        if not reply.ok:
            raise DecisionStoreError(
                f"writing decisions failed: {reply.error}", field="decision_log"
            )
        return reply.written

    def close(self, timeout: float = 10.0) -> None:
        """Let the child close the sink and exit (stopped if it takes longer than ``timeout``)."""
        with self._lock:
            if self._process is not None:
                self._stop(self._process, timeout)

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is not None:
            if process.poll() is None:
                return process
            logger.warning(
                "the decision-log writer process exited (code %s); starting a new one",
                process.returncode,
            )
            self._stop(process, 0.0)
        process = subprocess.Popen(
            [sys.executable, "-m", "rtserve.observability.decisions"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        _send(process.stdin, self._config)  # type: ignore[arg-type]
        self._process = process
        return process

    def _stop(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Close the child's stdin (it closes its sink and exits) and reap it."""
        self._process, self._sent = None, set()
        for pipe in (process.stdin, process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass  # a broken pipe: the child is gone
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the decision-log writer did not stop in %ss; killing it", timeout)
            process.kill()
            process.wait()


# --- the child's side ------------------------------------------------------------------------------


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Open the configured sink, then build and write each batch until stdin closes. The sink
    opens with the first batch, so that a failure to open it is reported as that batch's (and
    tried again with the next)."""
    config = _decode_config(_receive(requests))
    sink: DecisionSink = (
        SqlSink(config.target)
        if config.sink == "sql"
        else JsonlSink(config.target, max_bytes=config.max_bytes, max_files=config.max_files)
    )
    redactor = Redactor(config.key, config.mode)
    schemas: dict[str, Schema | None] = {}
    opened = False
    try:
        while True:
            try:
                batch = _decode_batch(_receive(requests))
            except EOFError:  # the server closed the pipe (or is gone)
                return
            try:
                for key, text in batch.schemas.items():
                    schemas[key] = Schema.model_validate_json(text) if text is not None else None
                if not opened:
                    sink.open()
                    opened = True
                written = 0
                for key, events in batch.groups:
                    records = decisions_for(
                        [_event(e) for e in events],
                        schemas[key],
                        redactor,
                        include_inputs=config.include_inputs,
                    )
                    sink.write(records)
                    written += len(records)
                reply = _Reply(ok=True, written=written)
            except Exception as exc:  # noqa: BLE001 - reported to the server, which counts it
                reply = _Reply(ok=False, error=f"{type(exc).__name__}: {exc}")
            _send(replies, _encode(reply))
    finally:
        sink.close()


def main() -> None:
    """The child's entry point: messages on stdin, replies on stdout (anything else printed
    goes to stderr, so it cannot corrupt a reply)."""
    name_os_thread(PROCESS_NAME)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
