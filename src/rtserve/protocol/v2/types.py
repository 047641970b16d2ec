"""Plain values of the Open Inference Protocol (KServe V2): tensors, requests, and datatypes.

The codec in ``rtserve.protocol.v2`` produces and consumes these; nothing here parses bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rtserve.bundle.schema import OutputSpec
from rtserve.types import AnyArray

#: Element type of each datatype the protocol names, little-endian as the binary extension demands.
#: ``BYTES`` elements are Python ``str`` in an object array (decoded as UTF-8).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: Every datatype name this server reads and writes, in the spec's order.
DATATYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)

#: Header that gives the JSON part's length in a binary-extension body.
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
#: Extensions this codec implements (reported by server metadata).
EXTENSIONS: tuple[str, ...] = ("binary_tensor_data",)


@dataclass(frozen=True)
class InputTensor:
    """One decoded input tensor.

    ``data`` has exactly ``shape`` (numbers as the datatype's numpy type; ``BYTES`` as an object
    array of ``str``). JSON ``null`` elements, an rtserve extension for missing values, become NaN
    in float tensors, turn integer tensors into float64 with NaN, and stay ``None`` in ``BOOL``
    (object array) and ``BYTES`` tensors. Binary tensors may be read-only views of the body.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: AnyArray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of a request's ``outputs`` list.

    ``binary_data`` is the output's own ``binary_data`` parameter; ``None`` when the client did
    not set it, in which case the request-wide ``binary_data_output`` decides.
    """

    name: str
    binary_data: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request whose tensors are not yet mapped to schema fields."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[InputTensor]
    #: The outputs the client asked for, in its order; ``None`` means every output.
    outputs: list[RequestedOutput] | None
    #: The request parameter ``binary_data_output`` (False when absent).
    binary_outputs_default: bool


@dataclass(frozen=True)
class OutputTensor:
    """One output tensor, ready to be encoded as JSON data or binary data."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: AnyArray


# --- what the codec reads about predictions -------------------------------------------------


class PredictionsLike(Protocol):
    """Outputs for a batch of rows: ``rtserve.engine.predictions.Predictions`` satisfies this.

    A protocol rather than the class itself because ``engine`` sits above ``protocol`` in the
    layer order (docs/architecture.md).
    """

    @property
    def spec(self) -> OutputSpec:
        """What the model answers (task, classes, width)."""

    @property
    def label(self) -> AnyArray | None:
        """One label per row (classifiers)."""

    @property
    def probabilities(self) -> AnyArray | None:
        """``[N, C]`` probabilities in the order of ``spec.classes`` (classifiers), if any."""

    @property
    def value(self) -> AnyArray | None:
        """``[N]`` or ``[N, W]`` values (regressors)."""
