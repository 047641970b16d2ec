"""Process-wide logging setup with structlog, called once by the CLI or a worker (never at import).

Every record, whether written through structlog or the standard ``logging`` module (rtserve's
modules, uvicorn), goes through one chain: level, logger name, UTC time, pid, the PII redaction
step, then one JSON object per line on stderr (or a readable line with ``json=False``). Extra
fields passed as ``logging``'s ``extra=`` become top-level keys.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import Processor

from rtserve.observability.redaction import Redactor, default_redactor

_LEVELS = ("debug", "info", "warning", "error")


def _add_pid(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["pid"] = os.getpid()
    return event_dict


def _dumps(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


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
    redact = (redactor if redactor is not None else default_redactor()).processor
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
    formatter = structlog.stdlib.ProcessorFormatter(
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
