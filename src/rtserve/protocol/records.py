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

#: How deeply a request that ``RowsDecoder`` reads can nest: object, list, row object.
ROWS_DEPTH = 3


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


#: A field as ``RowsDecoder`` reads it: its name, its JSON type (``float``, ``int``, ``bool`` or
#: ``str``) and whether it may be missing.
RowField = tuple[str, type, bool]


class RowsDecoder:
    """Predict requests whose every value has its field's JSON type, decoded straight into one
    tuple per row, in field order: one typed decode (no dict per row, no type check after).

    ``fields`` are the schema's (``RowField``), in its order; a field that may be missing reads
    as None when it is null or absent. ``decode`` answers None for any other request (a value
    of another type, a null where none is allowed, a missing field, an unknown one when
    ``reject_extra``, a number beyond float range, no rows, parameters, any top-level key but
    ``instances`` and ``parameters``, bytes that are not such JSON): ``decode_predict_request``
    and the validator then read it and say what is wrong. Its values are the ones
    ``decode_predict_request`` reads, with an integer of a ``float`` field rounded to the
    nearest float: the same parser, a repeated key's last value. A request it reads nests
    ``ROWS_DEPTH`` levels deep, unless an unknown field it skipped (``skips_unknown``) nests
    deeper.
    """

    def __init__(self, fields: Sequence[RowField], *, reject_extra: bool) -> None:
        attributes = [f"f{i}" for i in range(len(fields))]  # a field's name need not be one
        row = msgspec.defstruct(
            "Row",
            [
                (attribute, kind | None, None) if optional else (attribute, kind)
                for attribute, (_, kind, optional) in zip(attributes, fields, strict=True)
            ],
            rename=dict(zip(attributes, (name for name, _, _ in fields), strict=True)),
            kw_only=True,  # a field that may be missing can come before one that may not
            forbid_unknown_fields=reject_extra,
            gc=False,  # scalars only: nothing for the garbage collector to follow
        )
        request = msgspec.defstruct(
            "RowsRequest",
            [("instances", list[row]), ("parameters", dict[str, Any] | None, None)],  # type: ignore[valid-type]
            kw_only=True,
            # an unknown top-level value could nest past the depth limit: the general path's
            forbid_unknown_fields=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request)
        #: An unknown field of a row is skipped, however deeply it nests (``reject_extra`` off).
        self.skips_unknown = not reject_extra

    def decode(self, body: bytes) -> list[tuple[Any, ...]] | None:
        """The rows of ``body``; None when it is not a request of such rows alone."""
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
