"""The Open Inference Protocol (KServe V2) REST codec, with the binary tensor data extension.

Pure data in, pure data out: request bytes become an ``InferRequest`` (``v2_request``), its tensors
become the columns a schema validator takes and a model's predictions become named output tensors
(``v2_schema``), and those become response bytes (here). Every client mistake raises
``MalformedRequestError`` naming the field. This module is the one the engine imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rtserve.protocol import _json
from rtserve.protocol.v2_request import decode_infer_request
from rtserve.protocol.v2_schema import (
    MATRIX_INPUT,
    check_output_names,
    check_requested_outputs,
    columns_from_inputs,
    input_metadata,
    output_metadata,
    output_tensors,
)
from rtserve.protocol.v2_tensors import to_binary, to_json
from rtserve.protocol.v2_types import (
    DATATYPES,
    EXTENSIONS,
    HEADER_LENGTH_HEADER,
    InferRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
)

__all__ = [
    "DATATYPES",
    "EXTENSIONS",
    "HEADER_LENGTH_HEADER",
    "MATRIX_INPUT",
    "InferRequest",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "check_requested_outputs",
    "columns_from_inputs",
    "decode_infer_request",
    "encode_infer_response",
    "encode_model_metadata",
    "encode_model_ready",
    "encode_server_live",
    "encode_server_metadata",
    "encode_server_ready",
    "input_metadata",
    "output_metadata",
    "output_tensors",
]


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[OutputTensor],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and the headers it needs (``Content-Type``, and the header length).

    Outputs follow ``requested`` (its order; each output's ``binary_data``, else
    ``binary_default``); all outputs when it is ``None``. Any binary output makes the body the
    binary-extension form: JSON header, then the tensors' bytes in output order.
    """
    by_name = {tensor.name: tensor for tensor in outputs}
    check_output_names(requested, list(by_name))
    if requested is None:
        selected = [(tensor, binary_default) for tensor in outputs]
    else:
        selected = [
            (by_name[r.name], binary_default if r.binary_data is None else r.binary_data)
            for r in requested
        ]
    documents: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor, binary in selected:
        document: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if binary:
            chunk = to_binary(tensor.data, tensor.datatype)
            document["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            document["data"] = to_json(tensor.data, tensor.datatype)
        documents.append(document)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = documents
    header = _json.encode(response)
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *chunks]), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH_HEADER: str(len(header)),
    }


# --- health and metadata ---------------------------------------------------------------------


def encode_server_metadata(
    name: str, version: str, extensions: Sequence[str] = EXTENSIONS
) -> bytes:
    """``GET /v2``: the server's name, version and supported extensions."""
    return _json.encode({"name": name, "version": version, "extensions": list(extensions)})


def encode_model_metadata(
    name: str,
    versions: Sequence[str],
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    properties: Mapping[str, str] | None = None,
) -> bytes:
    """``GET /v2/models/{name}``: the model's tensors (from ``input_metadata`` / ``output_metadata``).

    ``properties`` (string to string, e.g. state, digest, the reason a model is not ready) is the
    spec's optional free-form map.
    """
    document: dict[str, Any] = {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }
    if properties:
        document["properties"] = dict(properties)
    return _json.encode(document)


def encode_server_live(live: bool) -> bytes:
    """``GET /v2/health/live``."""
    return _json.encode({"live": live})


def encode_server_ready(ready: bool) -> bytes:
    """``GET /v2/health/ready``."""
    return _json.encode({"ready": ready})


def encode_model_ready(name: str, ready: bool, reason: str | None = None) -> bytes:
    """``GET /v2/models/{name}/ready``; ``reason`` says why a model is not ready."""
    document: dict[str, Any] = {"name": name, "ready": ready}
    if reason is not None:
        document["reason"] = reason
    return _json.encode(document)
