"""The current request's id, for log correlation only.

The transport binds the request id while it serves a request, so that a log line written deep in
a call (a guard's warning, an error handler) can name the request it belongs to. Facts about the
request (model, timings, violations, the disconnect hook) do not travel here: they are written
into the ``RequestTrace`` (``rtserve.events``) that the transport passes explicitly through the
data plane and the batcher.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_request_id: ContextVar[str] = ContextVar("rtserve_request_id", default="")


def bind(request_id: str) -> Token[str]:
    """Make ``request_id`` the current request's (the transport calls this first)."""
    return _request_id.set(request_id)


def unbind(token: Token[str]) -> None:
    """Restore the request id that was current before ``bind``."""
    _request_id.reset(token)


def current_request_id() -> str:
    """The id of the request being served ("" outside one), for log lines."""
    return _request_id.get()
