"""Open Inference Protocol requests: JSON or binary-extension bytes to an ``InferRequest``.

The JSON part is decoded once by msgspec into private structs whose tensor ``data`` stays raw;
each tensor's shape is checked against ``TensorLimits`` before its data is read for the declared
datatype (``rtserve.protocol.v2.tensors``). Every problem is a ``MalformedRequestError`` (``PayloadTooLargeError``
for a shape beyond the limits) whose field names the spot (``inputs[2].shape``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from rtserve.errors import MalformedRequestError
from rtserve.protocol import _json
from rtserve.protocol.v2.tensors import TensorLimits, Where, check_shape, from_binary, from_json
from rtserve.protocol.v2.types import (
    DATATYPES,
    HEADER_LENGTH_HEADER,
    NUMPY_DTYPES,
    InferRequest,
    InputTensor,
    RequestedOutput,
)

_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_HINT = (
    'an inference request is {"inputs": [{"name": ..., "shape": [...], "datatype": ..., '
    '"data": [...]}, ...]} (Open Inference Protocol)'
)


class _Input(msgspec.Struct, kw_only=True):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: msgspec.Raw = msgspec.Raw()


class _Output(msgspec.Struct, kw_only=True):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct, kw_only=True):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Input]
    outputs: list[_Output] | None = None


_REQUEST = msgspec.json.Decoder(_Request)
_DEFAULT_LIMITS = TensorLimits()


def decode_infer_request(
    body: bytes, header_length: int | None, limits: TensorLimits | None = None
) -> InferRequest:
    """Read an inference request: JSON, or JSON followed by binary tensors.

    Args:
        body: the HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header as an int (the JSON part's
            length), or ``None`` when absent (the whole body is JSON).
        limits: rows and elements an input tensor may declare (default: the default settings').

    Raises:
        MalformedRequestError: for any body that is not a valid request, naming the field.
        PayloadTooLargeError: for a shape with more rows or elements than ``limits`` allow.
    """
    limits = limits if limits is not None else _DEFAULT_LIMITS
    binary = memoryview(b"")
    header = body
    if header_length is not None:
        if not 0 <= header_length <= len(body):
            raise MalformedRequestError(
                f"{HEADER_LENGTH_HEADER}: {header_length} is outside the body's {len(body)} "
                "bytes; it must give the length of the JSON part at the start of the body",
                field=HEADER_LENGTH_HEADER,
            )
        header = body[:header_length]
        binary = memoryview(body)[header_length:]
    raw = _json.decode(
        _REQUEST,
        header,
        what="the inference request",
        hint=_HINT,
        trailing_hint=f"binary tensors after the JSON need the {HEADER_LENGTH_HEADER} header"
        if header_length is None
        else "",
    )
    parameters = dict(raw.parameters or {})
    binary_default = _flag(parameters, "binary_data_output", "parameters.binary_data_output")
    if not raw.inputs:
        raise MalformedRequestError(
            f"inputs: the request has no input tensors; {_HINT}", field="inputs"
        )
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    offset = 0
    for i, item in enumerate(raw.inputs):
        if item.name in seen:
            raise MalformedRequestError(
                f"inputs[{i}].name: input {item.name!r} is sent twice; send each input once",
                field=f"inputs[{i}].name",
            )
        seen.add(item.name)
        tensor, offset = _input(i, item, binary, offset, limits)
        inputs.append(tensor)
    if offset != len(binary):
        raise MalformedRequestError(
            f"{HEADER_LENGTH_HEADER}: the body has {len(binary)} bytes after the JSON header but "
            f"the inputs' binary_data_size add up to {offset}; the header must give the JSON "
            "part's length and each binary input its exact size",
            field=HEADER_LENGTH_HEADER,
        )
    outputs = _requested(raw.outputs)
    return InferRequest(
        id=raw.id,
        parameters=parameters,
        inputs=inputs,
        outputs=outputs,
        binary_outputs_default=binary_default,
    )


def _input(
    i: int, item: _Input, binary: memoryview, offset: int, limits: TensorLimits
) -> tuple[InputTensor, int]:
    at = f"inputs[{i}]"
    if item.datatype not in NUMPY_DTYPES:
        raise MalformedRequestError(
            f"{at}.datatype: {item.datatype!r} (input {item.name!r}) is not a datatype this "
            f"server reads; use one of {', '.join(DATATYPES)}",
            field=f"{at}.datatype",
        )
    shape = tuple(item.shape)
    check_shape(shape, limits, f"{at}.shape", item.name)  # before any data is read
    parameters = dict(item.parameters or {})
    _refuse_shared_memory(parameters, f"{at}.parameters")
    where = Where(f"{at}.data", item.name)
    size = parameters.get("binary_data_size")
    if size is None:
        if not item.data:
            raise MalformedRequestError(
                f"{at}.data: input {item.name!r} has neither data nor a binary_data_size "
                "parameter; send the elements as JSON data or as binary data after the header",
                field=f"{at}.data",
            )
        return InputTensor(
            item.name,
            item.datatype,
            shape,
            from_json(item.data, item.datatype, shape, where),
            parameters,
        ), offset
    if type(size) is not int or size < 0:
        raise MalformedRequestError(
            f"{at}.parameters.binary_data_size: {size!r} (input {item.name!r}) is not a byte "
            "count; it must be a non-negative integer",
            field=f"{at}.parameters.binary_data_size",
        )
    if item.data:
        raise MalformedRequestError(
            f"{at}.data: input {item.name!r} has both JSON data and binary_data_size; send the "
            "elements one way only",
            field=f"{at}.data",
        )
    if size > len(binary) - offset:
        raise MalformedRequestError(
            f"{at}.parameters.binary_data_size: input {item.name!r} declares {size} bytes but "
            f"only {len(binary) - offset} remain after the JSON header; check the sizes and the "
            f"{HEADER_LENGTH_HEADER} header",
            field=f"{at}.parameters.binary_data_size",
        )
    data = from_binary(binary[offset : offset + size], item.datatype, shape, where)
    return InputTensor(item.name, item.datatype, shape, data, parameters), offset + size


def _requested(items: list[_Output] | None) -> list[RequestedOutput] | None:
    if not items:
        return None
    out: list[RequestedOutput] = []
    seen: set[str] = set()
    for j, item in enumerate(items):
        at = f"outputs[{j}]"
        if item.name in seen:
            raise MalformedRequestError(
                f"{at}.name: output {item.name!r} is requested twice; request each output once",
                field=f"{at}.name",
            )
        seen.add(item.name)
        parameters = dict(item.parameters or {})
        _refuse_shared_memory(parameters, f"{at}.parameters")
        if parameters.get("classification"):
            raise MalformedRequestError(
                f"{at}.parameters.classification: the classification extension is not "
                "supported; request the 'label' and 'probabilities' outputs instead",
                field=f"{at}.parameters.classification",
            )
        binary: bool | None = None
        if "binary_data" in parameters:
            binary = _flag(parameters, "binary_data", f"{at}.parameters.binary_data")
        out.append(RequestedOutput(item.name, binary, parameters))
    return out


def _flag(parameters: Mapping[str, Any], key: str, field: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise MalformedRequestError(
            f"{field}: {value!r} is not a boolean; set it to true or false", field=field
        )
    return value


def _refuse_shared_memory(parameters: Mapping[str, Any], at: str) -> None:
    for key in _SHARED_MEMORY:
        if key in parameters:
            raise MalformedRequestError(
                f"{at}.{key}: the shared-memory extension is not supported; send the data in "
                "the body (JSON or binary)",
                field=f"{at}.{key}",
            )
