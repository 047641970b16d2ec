"""The only place that maps rtserve errors (and stray exceptions) to HTTP responses.

Every error body has the keys ``error``, ``code`` and ``field`` (null when no one field is at
fault), whoever answers: a route, the router (404, 405), or the connection itself before the app
sees the request (``raw_error_response``: 400, 408, 431).
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Iterable

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from rtserve.errors import (
    AccessError,
    AuthenticationError,
    BundleError,
    DeadlineExceededError,
    HeaderTooLargeError,
    InputError,
    MalformedRequestError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PredictionError,
    RateLimitedError,
    RegistryConflictError,
    RegistryInputError,
    RegistryNotFoundError,
    RegistryPermissionError,
    RegistryStorageError,
    RequestTimeoutError,
    RolloutConflictError,
    RolloutSpecError,
    RtserveError,
    UnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)

logger = logging.getLogger("rtserve.server")

# Most specific first: the first matching class decides the status.
STATUS_OF: tuple[tuple[type[RtserveError], int], ...] = (
    (ValidationError, 422),
    (PayloadTooLargeError, 413),
    (HeaderTooLargeError, 431),
    (UnsupportedMediaTypeError, 415),
    (MalformedRequestError, 400),
    (RequestTimeoutError, 408),
    (InputError, 400),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (AccessError, 403),  # any other refusal of the caller: never a 500
    (RateLimitedError, 429),
    (NotFoundError, 404),
    (NotReadyError, 503),
    (UnavailableError, 503),
    (DeadlineExceededError, 504),
    (PredictionError, 500),
    (BundleError, 500),
    (RegistryInputError, 400),
    (RolloutSpecError, 400),
    (RolloutConflictError, 409),
    (RegistryPermissionError, 403),
    (RegistryNotFoundError, 404),
    (RegistryConflictError, 409),
    (RegistryStorageError, 503),
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    409: "conflict",
    429: "too_many_requests",
}


def status_for(error: RtserveError) -> int:
    """HTTP status for an rtserve error."""
    for kind, status in STATUS_OF:
        if isinstance(error, kind):
            return status
    return 500


def json_error(status: int, body: dict[str, object], request: Request | None = None) -> Response:
    """A JSON error response carrying the request id when there is one."""
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = "1"
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body = {**body, "request_id": request_id}
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def handle_rtserve_error(request: Request, exc: Exception) -> Response:
    """RtserveError -> its status and ``{"error", "code", "field"}`` body."""
    if not isinstance(exc, RtserveError):  # registered for RtserveError only
        return await handle_unexpected(request, exc)
    status = status_for(exc)
    if status >= 500 and not isinstance(exc, (UnavailableError, DeadlineExceededError)):
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    response = json_error(status, exc.to_dict(), request)
    response.headers.update(_guard_headers(exc))
    return response


def _guard_headers(exc: RtserveError) -> dict[str, str]:
    """``Retry-After``, ``RateLimit-*`` and ``WWW-Authenticate`` for the errors that call for them."""
    if isinstance(exc, RateLimitedError):
        return {
            "Retry-After": str(math.ceil(exc.retry_after)),
            "RateLimit-Limit": str(exc.limit),
            "RateLimit-Remaining": str(exc.remaining),
            "RateLimit-Reset": str(math.ceil(exc.reset_after)),
        }
    if isinstance(exc, UnavailableError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": 'Bearer realm="rtserve"'}
    return {}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same JSON shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await handle_unexpected(request, exc)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}; see /docs"
    response = json_error(exc.status_code, {"error": message, "code": code, "field": None}, request)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: log the traceback, tell the client nothing internal."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_error(
        500,
        {
            "error": "internal server error; see the server log",
            "code": "internal_error",
            "field": None,
        },
        request,
    )


def raw_error_response(
    error: RtserveError, default_headers: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, as bytes.

    For errors found on the connection before any application runs (headers too large or too
    slow, a request that is not HTTP): the protocol writes these bytes itself. ``default_headers``
    are the server's (``date``); a ``connection`` header among them is replaced by ``close``.
    """
    status = status_for(error)
    body = msgspec.json.encode(error.to_dict())
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode("ascii")]
    lines += [name + b": " + value for name, value in default_headers if name != b"connection"]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode("ascii"),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


EXCEPTION_HANDLERS = {
    RtserveError: handle_rtserve_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
