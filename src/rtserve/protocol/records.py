"""The records API codec (``POST /v1/models/{name}:predict``).

Request ``{"instances": [{field: value, ...}, ...], "parameters": {...}}``; response
``{"predictions": [...], "model": {"name", "version"}, "request_id"}``. The rows are handed to
``Validator.records`` as they are: this codec checks the document's shape, the validator the values.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from rtserve.protocol import _json


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
