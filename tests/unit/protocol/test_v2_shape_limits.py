"""A tensor's shape is checked before anything is allocated or reshaped for it: rank, sign,
rows and elements; every bad shape is a client error (400 or 413) naming ``inputs[i].shape``,
never a crash of numpy's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtserve.errors import InputError, MalformedRequestError, PayloadTooLargeError
from rtserve.protocol.v2.request import decode_infer_request
from rtserve.protocol.v2.tensors import MAX_RANK, TensorLimits, check_shape
from rtserve.server.error_handlers import status_for
from rtserve.settings import Settings

LIMITS = TensorLimits(max_rows=100, max_elements=1000)


def _json_body(shape: Any, data: Any, datatype: str = "FP64") -> bytes:
    tensor = {"name": "x", "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _binary_body(
    shape: Any, payload: bytes, datatype: str = "FP64", size: Any = None
) -> tuple[bytes, int]:
    size = len(payload) if size is None else size
    parameters = {"binary_data_size": size}
    tensor = {"name": "x", "shape": shape, "datatype": datatype, "parameters": parameters}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + payload, len(header)


def _refusal(body: bytes, header_length: int | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        decode_infer_request(body, header_length, LIMITS)
    return info.value


# --- JSON tensors ---------------------------------------------------------------------------


def test_a_rank_70_shape_is_a_400_naming_the_shape():
    error = _refusal(_json_body([1] * 70, [1.0]))
    assert isinstance(error, MalformedRequestError)
    assert status_for(error) == 400
    assert error.field == "inputs[0].shape"
    assert "70 dimensions" in error.message
    assert f"more than the {MAX_RANK}" in error.message


def test_a_shape_of_the_highest_rank_still_decodes():
    request = decode_infer_request(_json_body([1] * MAX_RANK, [1.0]), None, LIMITS)
    assert request.inputs[0].data.shape == (1,) * MAX_RANK


def test_an_empty_tensor_with_a_2_to_the_62_dimension_is_a_413_not_a_crash():
    error = _refusal(_json_body([0, 2**62], []))
    assert isinstance(error, PayloadTooLargeError)
    assert status_for(error) == 413
    assert error.field == "inputs[0].shape"
    assert str(2**62) in error.message


def test_dimensions_beyond_64_bits_are_a_413_not_a_crash():
    error = _refusal(_json_body([1, 2**64], [1.0]))
    assert status_for(error) == 413
    assert error.field == "inputs[0].shape"


@pytest.mark.parametrize("shape", [[-1], [2, -3], [0, -1]])
def test_a_negative_dimension_is_a_400_naming_the_shape(shape):
    error = _refusal(_json_body(shape, [1.0, 2.0]))
    assert isinstance(error, MalformedRequestError)
    assert error.field == "inputs[0].shape"
    assert "negative dimension" in error.message


@pytest.mark.parametrize("dim", [1.5, "2", True, None, [2]])
def test_a_dimension_that_is_not_an_integer_is_a_400_naming_it(dim):
    error = _refusal(_json_body([dim], [1.0, 2.0]))
    assert isinstance(error, MalformedRequestError)
    assert error.field == "inputs[0].shape[0]"


def test_more_rows_than_the_limit_is_a_413_before_the_data_is_read():
    error = _refusal(_json_body([101, 1], "not even an array"))
    assert isinstance(error, PayloadTooLargeError)
    assert error.field == "inputs[0].shape"
    assert "101 rows" in error.message
    assert "limit of 100" in error.message


def test_more_elements_than_the_limit_is_a_413_before_the_data_is_read():
    error = _refusal(_json_body([10, 101], "not even an array"))
    assert isinstance(error, PayloadTooLargeError)
    assert error.field == "inputs[0].shape"
    assert "1010 elements" in error.message
    assert "limit of 1000" in error.message


def test_rows_and_elements_at_the_limits_decode():
    request = decode_infer_request(_json_body([100, 10], [0.5] * 1000), None, LIMITS)
    assert request.inputs[0].data.shape == (100, 10)


def test_a_shape_whose_product_differs_from_the_data_length_is_a_400_naming_the_data():
    error = _refusal(_json_body([2, 3], [1.0] * 5))
    assert isinstance(error, MalformedRequestError)
    assert error.field == "inputs[0].data"
    assert "holds 5 element(s) but shape [2, 3] needs 6" in error.message


def test_the_limits_default_to_the_default_settings():
    limits = Settings().limits
    assert TensorLimits() == TensorLimits(limits.max_instances, limits.max_tensor_elements)
    assert TensorLimits.from_settings(
        Settings.load(limits={"max_instances": 7, "max_tensor_elements": 70}).limits
    ) == TensorLimits(max_rows=7, max_elements=70)


def test_without_explicit_limits_the_default_row_limit_applies():
    with pytest.raises(PayloadTooLargeError):
        decode_infer_request(_json_body([TensorLimits().max_rows + 1], [1.0]), None)


def test_check_shape_names_the_field_and_input_it_is_given():
    with pytest.raises(MalformedRequestError) as info:
        check_shape((1,) * 9, LIMITS, "inputs[3].shape", "amount")
    assert info.value.field == "inputs[3].shape"
    assert "'amount'" in info.value.message
    assert "rank-9 shape" in info.value.message


# --- binary tensors -------------------------------------------------------------------------


def test_a_binary_tensor_with_a_rank_70_shape_is_a_400():
    body, header_length = _binary_body([1] * 70, b"\x00" * 8)
    error = _refusal(body, header_length)
    assert status_for(error) == 400
    assert error.field == "inputs[0].shape"


def test_an_empty_binary_tensor_with_a_2_to_the_62_dimension_is_a_413_not_a_crash():
    body, header_length = _binary_body([0, 2**62], b"")
    error = _refusal(body, header_length)
    assert status_for(error) == 413
    assert error.field == "inputs[0].shape"


def test_a_binary_size_that_disagrees_with_the_shape_is_a_400_naming_the_data():
    body, header_length = _binary_body([3], b"\x00" * 16)  # two FP64 elements for a [3] shape
    error = _refusal(body, header_length)
    assert status_for(error) == 400
    assert error.field == "inputs[0].data"
    assert "holds 2 element(s) but shape [3] needs 3" in error.message


@pytest.mark.parametrize(
    "size", [-8, 2**70, 24, "16", 16.0], ids=["negative", "2**70", "beyond-body", "text", "float"]
)
def test_a_binary_data_size_that_is_negative_oversized_or_not_a_count_is_a_400(size):
    body, header_length = _binary_body([2], b"\x00" * 16, size=size)
    error = _refusal(body, header_length)
    assert status_for(error) == 400
    assert error.field == "inputs[0].parameters.binary_data_size"


@pytest.mark.parametrize("header_length", [-1, 10**6])
def test_an_inference_header_content_length_outside_the_body_is_a_400(header_length):
    body, _ = _binary_body([2], b"\x00" * 16)
    error = _refusal(body, header_length)
    assert status_for(error) == 400
    assert error.field == "Inference-Header-Content-Length"


def test_an_inference_header_content_length_that_leaves_extra_bytes_is_a_400():
    body, header_length = _binary_body([2], b"\x00" * 16)
    error = _refusal(body + b"\x00" * 8, header_length)
    assert status_for(error) == 400
    assert error.field == "Inference-Header-Content-Length"
