"""What one HTTP request learned on its way (model, batch, violations), readable at its end.

The middleware binds a ``RequestContext`` for each request; the data plane, which knows nothing
of HTTP, fills it in through the ``note_*`` functions (no-ops when nothing is bound, e.g. when a
notebook calls the data plane directly). At the end the middleware turns it into metrics, the
access-log record and trace spans.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Protocol

from rtserve.events import BatchInfo

#: W3C trace-context ``traceparent``: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class Violation(Protocol):
    """The two things counted about a schema violation (``rtserve.errors.FieldViolation``)."""

    @property
    def field(self) -> str:
        """The field name as the client sent it."""

    @property
    def rule(self) -> str:
        """The broken rule (``type``, ``minimum``, ``required``, ``unknown_field`` ...)."""


@dataclass(slots=True)
class RequestContext:
    """Facts about one request, filled in as it goes; times are ``time.perf_counter`` values."""

    request_id: str
    started: float
    traceparent: str | None = None
    model: str = ""
    version: str = ""
    rows: int = 0
    batch_rows: int = 0
    fallback: bool = False
    #: (field label, rule) per violation; field labels are schema names or ``_unknown``.
    violations: list[tuple[str, str]] = field(default_factory=list)
    #: When validation began / ended and prediction ended (0.0: did not happen).
    validate_started: float = 0.0
    validated: float = 0.0
    queue_seconds: float = 0.0
    predict_seconds: float = 0.0
    predicted: float = 0.0
    #: Called when the request starts waiting (queued for a batch, decoding in a thread): the
    #: transport then watches for a client disconnect, which an inline request never needs.
    on_wait: Callable[[], None] | None = None

    @property
    def trace_id(self) -> str | None:
        """The trace id of the incoming ``traceparent`` (None without a valid one)."""
        parsed = parse_traceparent(self.traceparent)
        return parsed[0] if parsed else None

    def served_fields(self, prefix: str = "") -> dict[str, str | int | bool]:
        """The model and batch facts the access log and the request's span both carry, each name
        after ``prefix``: model and version once routed, rows, batch size and fallback once
        predicted (one mapping, so the log and the trace never disagree)."""
        fields: dict[str, str | int | bool] = {}
        if self.model:
            fields[prefix + "model"] = self.model
            fields[prefix + "version"] = self.version
        if self.rows:
            fields[prefix + "rows"] = self.rows
            fields[prefix + "batch_size"] = self.batch_rows
            fields[prefix + "fallback"] = self.fallback
        return fields


_current: ContextVar[RequestContext | None] = ContextVar("rtserve_request", default=None)


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` of a valid W3C ``traceparent`` header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return match.group(1), match.group(2)


def bind(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` the current request's (the middleware calls this first)."""
    return _current.set(context)


def unbind(token: Token[RequestContext | None]) -> None:
    """Restore the context that was current before ``bind``."""
    _current.reset(token)


def current() -> RequestContext | None:
    """The current request's context, if a middleware bound one."""
    return _current.get()


def note_model(name: str, version: str) -> None:
    """The request was routed to this served model version."""
    context = _current.get()
    if context is not None:
        context.model, context.version = name, version


def note_validation(started: float, finished: float) -> None:
    """Validation ran from ``started`` to ``finished`` (perf_counter)."""
    context = _current.get()
    if context is not None:
        context.validate_started, context.validated = started, finished


def note_rejection(fields: Collection[str], violations: Sequence[Violation]) -> None:
    """Validation refused the request: keep (field, rule) with unknown fields as ``_unknown``."""
    context = _current.get()
    if context is not None:
        context.violations = [
            (v.field if v.field in fields else "_unknown", v.rule) for v in violations
        ]


def note_prediction(
    rows: int, batch: BatchInfo, finished: float, *, fallback: bool = False
) -> None:
    """The model answered ``rows`` rows in a batch of ``batch.batch_rows``."""
    context = _current.get()
    if context is not None:
        context.rows = rows
        context.batch_rows = batch.batch_rows
        context.queue_seconds = batch.queue_seconds
        context.predict_seconds = batch.predict_seconds
        context.predicted = finished
        context.fallback = fallback


def current_traceparent() -> str | None:
    """The incoming ``traceparent`` of the current request, if any."""
    context = _current.get()
    return context.traceparent if context is not None else None


def note_waiting() -> None:
    """The request is about to wait for work done elsewhere (see ``RequestContext.on_wait``)."""
    context = _current.get()
    if context is not None and context.on_wait is not None:
        context.on_wait()
