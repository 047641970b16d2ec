"""Shared JSON plumbing of the codecs: msgspec failures translated into MalformedRequestError."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from rtserve.errors import MalformedRequestError

T = TypeVar("T")

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")


def split_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(message without its location, the offending field as ``a.b[0]``; empty for the body).

    A missing field is named itself (``inputs[0].shape``), not the object that lacks it.
    """
    match = _AT_PATH.match(str(exc))
    if match is None:  # pragma: no cover - the pattern matches every string
        return str(exc), ""
    message, path = match["message"], (match["path"] or "").lstrip(".")
    missing = _MISSING_FIELD.match(message)
    if missing:
        path = f"{path}.{missing['name']}" if path else missing["name"]
        message = "required but missing"
    return message, path


def decode(
    decoder: msgspec.json.Decoder[T],
    body: bytes,
    *,
    what: str,
    hint: str,
    trailing_hint: str = "",
) -> T:
    """Decode ``body`` with a typed decoder; every failure becomes a MalformedRequestError.

    ``what`` names the document in messages (e.g. "the inference request"), ``hint`` says what a
    valid one looks like, ``trailing_hint`` what bytes after the JSON value may mean.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, path = split_path(exc)
        where = path or "body"
        raise MalformedRequestError(
            f"{where}: {_lower_first(message)} in {what}; {hint}", field=path or None
        ) from exc
    except msgspec.DecodeError as exc:
        extra = f" ({trailing_hint})" if trailing_hint and "trailing characters" in str(exc) else ""
        raise MalformedRequestError(
            f"body: {what} is not valid JSON: {exc}{extra}; {hint}"
        ) from exc
    except RecursionError as exc:
        raise MalformedRequestError(
            f"body: {what} nests arrays or objects too deeply to be read; {hint}"
        ) from exc


def encode(value: Any) -> bytes:
    """Encode a response document (NaN and infinity become ``null``, as JSON has neither)."""
    return _ENCODER.encode(value)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


_ENCODER = msgspec.json.Encoder()
