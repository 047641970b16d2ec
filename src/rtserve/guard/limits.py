"""Request limits: body size (after decompression), rows per request, string length, JSON depth.

Every check here bounds the memory or CPU one request can cost before anything touches the model.
The body is checked while it streams in, so an oversized upload is cut off at the limit instead of
being buffered first; a gzip body is limited by its *decompressed* size (a "zip bomb" stops at the
limit, not at the end of its expansion).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sized
from dataclasses import dataclass

import numpy as np

from rtserve.errors import (
    FieldViolation,
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from rtserve.settings import Settings
from rtserve.types import Columns

#: Content codings a body may arrive in (``Content-Encoding``).
ENCODINGS = ("identity", "gzip", "deflate")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")


@dataclass(frozen=True)
class RequestLimits:
    """The configured bounds of one request."""

    max_body_bytes: int = 8 << 20
    max_instances: int = 10_000
    max_string_length: int = 4096
    max_json_depth: int = 32
    body_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        """The limits ``settings`` configure."""
        limits = settings.limits
        return cls(
            max_body_bytes=limits.max_body_bytes,
            max_instances=limits.max_instances,
            max_string_length=limits.max_string_length,
            max_json_depth=limits.max_json_depth,
            body_timeout_s=limits.body_timeout_s,
        )


class BodyBuffer:
    """Collects a streamed body, decoding ``gzip``/``deflate``, refusing it past ``limit`` bytes."""

    def __init__(self, limit: int, encoding: str | None = None) -> None:
        coding = (encoding or "identity").strip().lower()
        if coding not in ENCODINGS:
            raise UnsupportedMediaTypeError(
                f"content-encoding {coding!r} is not accepted; send one of {list(ENCODINGS)}",
                field="content-encoding",
            )
        self.limit = limit
        self.encoding = coding
        self.size = 0  # bytes after decoding
        self._chunks: list[bytes] = []
        # wbits 47 (32 + 15): zlib detects a gzip or zlib header itself.
        self._inflate = zlib.decompressobj(47) if coding != "identity" else None

    def check_declared(self, content_length: str | None) -> None:
        """Refuse at once when ``Content-Length`` already says the body is too large."""
        if (
            self._inflate is None
            and content_length is not None
            and content_length.isdigit()
            and int(content_length) > self.limit
        ):
            raise self._too_large(int(content_length))

    def feed(self, chunk: bytes) -> None:
        """Add the next raw chunk; raises ``PayloadTooLargeError`` as soon as the limit is passed."""
        if self._inflate is None:
            self._add(chunk)
            return
        try:
            # Never inflate more than one byte past the limit, whatever the chunk expands to.
            data = self._inflate.decompress(chunk, self.limit - self.size + 1)
            self._add(data)
            while self._inflate.unconsumed_tail:
                data = self._inflate.decompress(
                    self._inflate.unconsumed_tail, self.limit - self.size + 1
                )
                self._add(data)
        except zlib.error as exc:
            raise MalformedRequestError(
                f"body: not valid {self.encoding} data ({exc}); send it uncompressed or fix the "
                "Content-Encoding header",
                field="content-encoding",
            ) from exc

    def finish(self) -> bytes:
        """The whole decoded body."""
        if self._inflate is not None:
            self._add(self._inflate.flush())
            if not self._inflate.eof:
                raise MalformedRequestError(
                    f"body: the {self.encoding} stream ends early; the upload was cut off",
                    field="content-encoding",
                )
        return b"".join(self._chunks)

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise self._too_large(None)
        if data:
            self._chunks.append(data)

    def _too_large(self, declared: int | None) -> PayloadTooLargeError:
        size = f"of {declared} bytes " if declared is not None else ""
        after = " after decompression" if self._inflate is not None else ""
        return PayloadTooLargeError(
            f"request body {size}exceeds the limit of {self.limit} bytes{after}; split the request "
            "into smaller batches",
            field="body",
        )


def check_rows(rows: int, limit: int, field: str) -> None:
    """Refuse a request with more than ``limit`` rows (instances) before they are validated."""
    if rows > limit:
        raise PayloadTooLargeError(
            f"{field}: {rows} rows exceed the limit of {limit} per request; split the request "
            "into smaller batches",
            field=field,
        )


def rows_of(columns: Mapping[str, Sized]) -> int:
    """Rows in a dict of equally long columns (0 for none)."""
    for column in columns.values():
        return len(column)
    return 0


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON document (strings ignored), in C-speed passes."""
    structure = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not structure:
        return 0
    codes = np.frombuffer(structure, dtype=np.uint8)
    steps = np.where(np.isin(codes, _OPEN_CODES), 1, -1)
    return int(np.cumsum(steps).max())


def depth_past(body: bytes, limit: int) -> int | None:
    """How deeply a JSON body's arrays/objects nest, when deeper than ``limit``; None when
    they do not."""
    if body.count(b"[") + body.count(b"{") <= limit:  # cannot nest deeper than it opens
        return None
    depth = json_depth(body)
    return depth if depth > limit else None


def check_json_depth(body: bytes, limit: int) -> None:
    """Refuse a JSON body whose arrays/objects nest deeper than ``limit``."""
    depth = depth_past(body, limit)
    if depth is not None:
        raise MalformedRequestError(
            f"body: JSON nests {depth} levels deep, more than the limit of {limit}; "
            "send flat records or tensors",
            field="body",
        )


def check_strings(columns: Columns, limit: int) -> None:
    """Refuse string values longer than ``limit`` characters, naming the field and row."""
    violations: list[FieldViolation] = []
    for name, column in columns.items():
        if column.dtype.kind not in "OU":
            continue
        for row, value in enumerate(column.tolist()):
            if isinstance(value, str) and len(value) > limit:
                violations.append(
                    FieldViolation(
                        field=name,
                        rule="max_string_length",
                        message=f"{name}: a string of {len(value)} characters is longer than the "
                        f"limit of {limit}",
                        row=row,
                    )
                )
                if len(violations) >= 100:
                    raise ValidationError(violations)
    if violations:
        raise ValidationError(violations)


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_CODES = np.array(sorted(_OPEN), dtype=np.uint8)
