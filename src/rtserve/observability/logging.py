"""Process-wide logging setup with structlog, called once by the CLI or a worker (never at import).

Every record, whether written through structlog or the standard ``logging`` module (rtserve's
modules, uvicorn), goes through one chain: level, logger name, UTC time, pid, the PII redaction
step, then one JSON object per line on stderr (or a readable line with ``json=False``). Extra
fields passed as ``logging``'s ``extra=`` become top-level keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Collection, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import Processor

from rtserve.observability.redaction import Redactor, default_redactor

_LEVELS = ("debug", "info", "warning", "error")


#: This process's id, refreshed in a forked child (``os.getpid`` is a system call each time).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _add_pid(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["pid"] = _PID[0]
    return event_dict


def _dumps(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


#: ``_dumps``'s encoding, one line per object (``JsonLineWriter.write_many``).
_line_encoder = msgspec.json.Encoder(enc_hook=str)


def configure_logging(
    level: str = "info",
    *,
    json: bool = True,
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send rtserve's and uvicorn's logs to ``stream`` (stderr), as JSON lines by default.

    Args:
        level: debug, info, warning or error.
        json: one JSON object per line; False for human-readable lines.
        redactor: the redaction step (the process-wide one by default, which the server tells
            about the PII fields of every schema it serves).
        stream: where lines go; stderr by default.
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {list(_LEVELS)}")
    redactor = redactor if redactor is not None else default_redactor()
    redact = redactor.processor
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        _add_pid,
        redact,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter_class = _JsonFormatter if json else structlog.stdlib.ProcessorFormatter
    formatter = formatter_class(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("message") if json else _identity,
            structlog.processors.format_exc_info if json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    if isinstance(formatter, _JsonFormatter):
        formatter.redact = redact
        formatter.writer = JsonLineWriter(handler, redact, pii=redactor.pii_fields)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _identity(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return event_dict


#: Attributes every ``logging.LogRecord`` has; anything else on a record came from ``extra=``.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class _JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """The JSON formatter, with a direct path for standard-library records.

    structlog's chain costs tens of microseconds per record; the access log writes one record
    per request. A ``logging`` record (rtserve's, uvicorn's) is rendered here to the same JSON
    object the chain would produce (extras, level, logger, UTC time, pid, PII redaction,
    exception); records from structlog loggers still go through the chain.
    """

    redact: Processor | None = None
    writer: JsonLineWriter | None = None

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for ``record``."""
        if self.redact is None or hasattr(record, "_logger"):  # wrap_for_formatter's mark
            return super().format(record)
        entry: dict[str, Any] = {
            key: value for key, value in record.__dict__.items() if key not in _RECORD_KEYS
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        fields = _fields(
            entry, self.redact, record.getMessage(), record.levelname.lower(), record.name,
            _utc_iso(record.created), record.process,
        )  # fmt: skip
        return _dumps(fields)


class JsonLineWriter:
    """Writes a record built by the caller straight to the JSON handler ``configure_logging``
    installed: the line a ``logging`` call would produce, without a ``LogRecord``, the logger
    hierarchy or a formatter (the access log writes one per request).

    On an event loop, lines are collected and written once per loop iteration: under load many
    requests finish per iteration, and one write replaces a system call per line.
    """

    def __init__(
        self,
        handler: logging.StreamHandler[TextIO],
        redact: Processor,
        *,
        pii: Collection[str] = frozenset(),
    ) -> None:
        """``redact`` is the chain's redaction step; ``pii`` the names it redacts (the
        redactor's live set: schemas add to it as they load)."""
        self._handler = handler
        self._redact = redact
        self._pii = pii
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, logger: str, level: str, message: str, fields: dict[str, Any]) -> None:
        """Write one line with ``fields`` and the standard keys."""
        self.write_many(logger, level, [(message, fields)])

    def write_many(
        self, logger: str, level: str, entries: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Write one line per ``(message, fields)``, stamped with one time, encoded in one call."""
        stamp, redact = _utc_iso(time.time()), self._redact
        objects = [
            _fields(fields, redact, message, level, logger, stamp, _PID[0])
            for message, fields in entries
        ]
        self.write_objects(objects)

    def redacts(self, keys: Collection[str]) -> bool:
        """Whether any of these top-level keys would be redacted now."""
        return any(key in self._pii for key in keys)

    @staticmethod
    def stamp() -> tuple[str, int]:
        """The time and pid a line written now carries (``time`` and ``pid``)."""
        return _utc_iso(time.time()), _PID[0]

    def write_objects(self, objects: Sequence[Any]) -> None:
        """Write one line per object, built whole by the caller: the standard keys included
        (``stamp``) and nothing left to redact (``redacts``)."""
        line = _line_encoder.encode_lines(objects).decode()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (self._loop is not None and loop is not self._loop):
            self._emit(line)
            return
        self._loop = loop
        self._pending.append(line)
        if len(self._pending) == 1:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the collected lines now."""
        lines, self._pending = self._pending, []
        if lines:
            self._emit("".join(lines))

    def _emit(self, text: str) -> None:
        handler = self._handler
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(text)
            handler.stream.flush()


def _fields(
    fields: dict[str, Any],
    redact: Processor,
    message: str,
    level: str,
    logger: str,
    stamp: str,
    pid: int | None,
) -> dict[str, Any]:
    """``fields`` with the standard keys added, redacted (in place): the chain's output as a
    dict. ``stamp`` is the time (``_utc_iso``)."""
    fields["message"] = message
    fields["level"] = level
    fields["logger"] = logger
    fields["time"] = stamp
    fields["pid"] = pid
    redact(None, level, fields)
    return fields


def json_line_writer(logger: logging.Logger) -> JsonLineWriter | None:
    """A direct writer for ``logger``'s records when they would reach only the JSON handler
    ``configure_logging`` installed; None when logging is set up otherwise (then records go
    through ``logging`` as usual)."""
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    handlers = logging.root.handlers
    if len(handlers) == 1 and isinstance(handlers[0].formatter, _JsonFormatter):
        return handlers[0].formatter.writer
    return None


def _utc_iso(created: float) -> str:
    """``2026-11-30T01:02:03.456789Z``, as structlog's ``TimeStamper(fmt="iso", utc=True)``."""
    second = int(created)
    return f"{_utc_second(second)}.{int((created - second) * 1e6):06d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    """Date and time to the second, formatted once per second."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
