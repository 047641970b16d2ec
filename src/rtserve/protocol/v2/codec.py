"""Open Inference Protocol response bodies: output tensors, server and model metadata to bytes.

Output tensors (``rtserve.protocol.v2.schema.output_tensors``) become a JSON body, or the binary
tensor data extension's JSON header followed by the tensors' bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rtserve.protocol import _json
from rtserve.protocol.v2.schema import (
    check_output_names,
)
from rtserve.protocol.v2.tensors import to_binary, to_json
from rtserve.protocol.v2.types import (
    EXTENSIONS,
    HEADER_LENGTH_HEADER,
    OutputTensor,
    RequestedOutput,
)


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
