"""The Open Inference Protocol (KServe V2) REST codec, with the binary tensor data extension.

Pure data in, pure data out: request bytes become an ``InferRequest`` (``request``), its tensors
become the columns a schema validator takes and a model's predictions become named output tensors
(``schema``), and those become response bytes (``codec``). ``tensors`` reads and writes tensor
data; ``types`` holds the plain values. Every client mistake raises ``MalformedRequestError``
naming the field. The engine imports this package (``from rtserve.protocol import v2``).
"""

from rtserve.protocol.v2.codec import (
    encode_infer_response,
    encode_model_metadata,
    encode_server_metadata,
)
from rtserve.protocol.v2.request import decode_infer_request
from rtserve.protocol.v2.schema import (
    MATRIX_INPUT,
    check_requested_outputs,
    columns_from_inputs,
    input_metadata,
    output_metadata,
    output_tensors,
)
from rtserve.protocol.v2.tensors import TensorLimits
from rtserve.protocol.v2.types import (
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
    "TensorLimits",
    "check_requested_outputs",
    "columns_from_inputs",
    "decode_infer_request",
    "encode_infer_response",
    "encode_model_metadata",
    "encode_server_metadata",
    "input_metadata",
    "output_metadata",
    "output_tensors",
]
