"""The records API codec (``POST /v1/models/{name}:predict``).

Request ``{"instances": [{field: value, ...}, ...], "parameters": {...}}``; response
``{"predictions": [...], "model": {"name", "version"}, "request_id"}``. The rows are handed to
``Validator.records`` as they are: this codec checks the document's shape, the validator the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from msgspec.structs import astuple

from rtserve.protocol import _json

#: How deeply a request that ``FloatRowsDecoder`` reads can nest: object, list, row object.
FLOAT_ROWS_DEPTH = 3


class RecordsLike(Protocol):
    """Predictions that can be written as one JSON object per row (``Predictions``)."""

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row."""


class _PredictRequest(msgspec.Struct, kw_only=True):
    instances: list[dict[str, Any]]
    parameters: dict[str, Any] | None = None


_REQUEST = msgspec.json.Decoder(_PredictRequest)
_HINT = 'a predict request is {"instances": [{"field": value, ...}, ...]} with one object per row'


def decode_predict_request(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and the parameters of a predict request.

    Raises:
        MalformedRequestError: the body is not JSON, not an object, or ``instances`` is not a
            list of objects (the field names the offending part, e.g. ``instances[3]``).
    """
    request = _json.decode(_REQUEST, body, what="the predict request", hint=_HINT)
    return request.instances, dict(request.parameters or {})


class FloatRowsDecoder:
    """Predict requests whose rows hold only numbers, decoded straight into one tuple of floats
    per row, in ``names`` order: one typed decode (no dict per row, no type check after) for a
    model whose every input is a float.

    ``decode`` answers None for any other request (a null, a string, a bool, a missing field,
    an unknown one when ``reject_extra``, a number beyond float range, no rows, parameters, bytes
    that are not such JSON): ``decode_predict_request`` and the validator then read it and say
    what is wrong. A request it reads nests ``FLOAT_ROWS_DEPTH`` levels deep. Its values are the
    ones ``decode_predict_request`` reads, as floats: the same parser, an integer rounded to the
    nearest float, a repeated key's last value.
    """

    def __init__(self, names: Sequence[str], *, reject_extra: bool) -> None:
        attributes = [f"f{i}" for i in range(len(names))]  # a field's name need not be one
        row = msgspec.defstruct(
            "FloatRow",
            [(attribute, float) for attribute in attributes],
            rename=dict(zip(attributes, names, strict=True)),
            forbid_unknown_fields=reject_extra,
            gc=False,  # floats only: nothing for the garbage collector to follow
        )
        request = msgspec.defstruct(
            "FloatRowsRequest",
            [("instances", list[row]), ("parameters", dict[str, Any] | None, None)],  # type: ignore[valid-type]
            kw_only=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request)

    def decode(self, body: bytes) -> list[tuple[float, ...]] | None:
        """The rows of ``body``; None when it is not a request of float rows alone."""
        try:
            request = self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):  # a ValidationError is a DecodeError
            return None
        if not request.instances or request.parameters:
            return None
        return list(map(astuple, request.instances))


def encode_predict_response(
    predictions: RecordsLike, *, name: str, version: str, request_id: str, variant: str = ""
) -> bytes:
    """The predict response: one record per input row, plus which model answered (and, under
    a rollout, why: ``variant`` is production, canary, ab:VERSION or pinned)."""
    return encode_predict_rows(
        predictions.to_records(), name=name, version=version, request_id=request_id, variant=variant
    )


def encode_predict_rows(
    rows: list[dict[str, Any]], *, name: str, version: str, request_id: str, variant: str = ""
) -> bytes:
    """``encode_predict_response`` of answer records already made (``Predictions.to_records``),
    e.g. one request's share of a group's answers."""
    model = {"name": name, "version": version, "variant": variant} if variant else {
        "name": name, "version": version}  # fmt: skip
    return _json.encode({"predictions": rows, "model": model, "request_id": request_id})
