"""Whatever bytes arrive, the codecs answer with MalformedRequestError or a decoded request."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtserve.errors import MalformedRequestError
from rtserve.protocol.records import decode_predict_request
from rtserve.protocol.v2 import DATATYPES, decode_infer_request

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
_shapes = st.lists(st.integers(-2, 4), max_size=4) | _json_values
_tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "y"]) | _json_values,
        "shape": _shapes,
        "datatype": st.sampled_from([*DATATYPES, "BF16", "fp32"]) | _json_values,
    },
    optional={
        "data": _json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-4, 64) | _json_values}
        )
        | _json_values,
    },
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "id": _json_values,
        "inputs": st.lists(_tensors, max_size=3) | _json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=3)}, optional={"parameters": _json_values}
            )
        ),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": _json_values})
        | _json_values,
    },
)

# Well-formed envelopes whose tensor contents are random but often the right size and type: they
# reach every branch of the tensor readers.
_ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2}
_typed_scalars = {
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=4),
    **{t: st.floats(allow_nan=False, width=64) for t in ("FP16", "FP32", "FP64")},
    **{t: st.integers(-(2**64), 2**64) | st.integers(-3, 300) for t in DATATYPES if "INT" in t},
}


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _contents(name: str, shape: list[int], datatype: str) -> st.SearchStrategy[dict[str, Any]]:
    count = _count(shape)
    element = _typed_scalars[datatype] | st.none() | _scalars
    size = count * _ITEMSIZE.get(datatype, 4 if "32" in datatype else 8)
    envelope = {"name": name, "shape": shape, "datatype": datatype}
    return st.one_of(
        st.lists(element, min_size=count, max_size=count).map(lambda d: {**envelope, "data": d}),
        _elements.map(lambda d: {**envelope, "data": d}),
        st.sampled_from([size, 0, size + 1]).map(
            lambda n: {**envelope, "parameters": {"binary_data_size": n}}
        ),
    )


_elements = st.lists(_scalars, max_size=6) | st.lists(st.lists(_scalars, max_size=3), max_size=3)
_plausible_tensors = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.lists(st.integers(0, 3), min_size=1, max_size=3),
    st.sampled_from(DATATYPES),
).flatmap(lambda t: _contents(*t))


def _decodes_or_refuses(body: bytes, header_length: int | None) -> None:
    try:
        request = decode_infer_request(body, header_length)
    except MalformedRequestError as error:
        refusal = error
    else:
        refusal = None
    if refusal is not None:
        assert refusal.message  # a sentence, never empty
        return
    for tensor in request.inputs:  # what was accepted is consistent with what it claims
        assert tensor.data.shape == tensor.shape


@FUZZ
@given(body=st.binary(max_size=300), header_length=st.none() | st.integers(-5, 400))
def test_arbitrary_bytes_never_raise_anything_but_malformed_request(body, header_length):
    _decodes_or_refuses(body, header_length)


@FUZZ
@given(document=_requests, tail=st.binary(max_size=64), use_header=st.booleans())
def test_structured_requests_never_raise_anything_but_malformed_request(
    document: Any, tail, use_header
):
    header = json.dumps(document).encode()
    if use_header:
        _decodes_or_refuses(header + tail, len(header))
    else:
        _decodes_or_refuses(header, None)


@FUZZ
@given(
    body=st.binary(max_size=300) | _json_values.map(lambda v: json.dumps({"instances": v}).encode())
)
def test_arbitrary_predict_bodies_never_raise_anything_but_malformed_request(body):
    try:
        instances, parameters = decode_predict_request(body)
    except MalformedRequestError:
        return
    assert all(isinstance(row, dict) for row in instances)
    assert isinstance(parameters, dict)
