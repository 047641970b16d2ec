"""Decoding Open Inference Protocol requests: the exact bodies tritonclient sends, JSON and binary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from rtserve.errors import MalformedRequestError
from rtserve.protocol.v2 import HEADER_LENGTH_HEADER, decode_infer_request
from tests.unit.protocol.conftest import triton_input, triton_request

ARRAYS: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([[1, 2, 3], [4, 5, 4_000_000_000]], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-32768, 32767], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
    "FP32": np.array([[1.5, -2.25], [3.0e38, 0.0]], dtype=np.float32),
    "FP64": np.array([1.0e-300, -2.5, 1.0e300], dtype=np.float64),
    "BYTES": np.array([["card", "né"], ["€uro", ""]], dtype=object),
}


def _decode_one(array: np.ndarray[Any, Any], *, binary: bool) -> Any:
    body, header_length = triton_request([triton_input("x", array, binary=binary)])
    request = decode_infer_request(body, header_length)
    assert len(request.inputs) == 1
    return request.inputs[0]


@pytest.mark.parametrize("datatype", list(ARRAYS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_decodes_to_the_array_tritonclient_sent(datatype, binary):
    array = ARRAYS[datatype]
    tensor = _decode_one(array, binary=binary)
    assert tensor.name == "x"
    assert tensor.datatype == datatype
    assert tensor.shape == array.shape
    assert tensor.data.shape == array.shape
    if datatype == "BYTES":
        assert tensor.data.dtype == object
        assert tensor.data.tolist() == array.tolist()
        assert all(type(v) is str for v in tensor.data.ravel())
    else:
        assert tensor.data.dtype == array.dtype
        np.testing.assert_array_equal(tensor.data, array)


def test_binary_and_json_inputs_mix_in_one_request():
    amount = np.array([12.5, 80.0, 3.25])
    country = np.array(["FR", "DE", "US"], dtype=object)
    present = np.array([True, False, True])
    body, header_length = triton_request(
        [
            triton_input("amount", amount, binary=True),
            triton_input("country", country, binary=False),
            triton_input("card_present", present, binary=True),
        ],
        request_id="req-7",
    )
    assert header_length is not None
    assert header_length < len(body)
    request = decode_infer_request(body, header_length)
    assert request.id == "req-7"
    assert [t.name for t in request.inputs] == ["amount", "country", "card_present"]
    np.testing.assert_array_equal(request.inputs[0].data, amount)
    assert request.inputs[1].data.tolist() == ["FR", "DE", "US"]
    np.testing.assert_array_equal(request.inputs[2].data, present)


def test_no_requested_outputs_means_all_outputs_and_tritonclients_binary_default():
    body, header_length = triton_request([triton_input("x", np.array([1.0]), binary=False)])
    request = decode_infer_request(body, header_length)
    assert request.outputs is None
    assert request.binary_outputs_default is True  # tritonclient sets binary_data_output


def test_requested_outputs_keep_their_order_and_binary_flags():
    body, header_length = triton_request(
        [triton_input("x", np.array([1.0]), binary=False)],
        outputs=[
            triton.InferRequestedOutput("probabilities", binary_data=False),
            triton.InferRequestedOutput("label", binary_data=True),
        ],
    )
    request = decode_infer_request(body, header_length)
    assert request.outputs is not None
    assert [(o.name, o.binary_data) for o in request.outputs] == [
        ("probabilities", False),
        ("label", True),
    ]
    assert request.binary_outputs_default is False


def test_request_parameters_are_kept():
    body, header_length = triton_request(
        [triton_input("x", np.array([1.0]), binary=False)], parameters={"tenant": "acme"}
    )
    assert decode_infer_request(body, header_length).parameters["tenant"] == "acme"


def test_a_plain_json_request_from_the_spec_decodes():
    body = b"""{"id": "42", "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [true, false, true]}],
        "outputs": [{"name": "output0"}]}"""
    request = decode_infer_request(body, None)
    assert request.id == "42"
    np.testing.assert_array_equal(request.inputs[0].data, [[1, 2], [3, 4]])
    assert request.inputs[0].data.dtype == np.uint32
    assert request.inputs[1].data.tolist() == [True, False, True]
    assert request.outputs is not None
    assert request.outputs[0].binary_data is None


def test_nested_json_data_equals_flat_data():
    nested = b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}]}'
    flat = b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}'
    np.testing.assert_array_equal(
        decode_infer_request(nested, None).inputs[0].data,
        decode_infer_request(flat, None).inputs[0].data,
    )


def test_deeper_nesting_up_to_the_shapes_rank_is_accepted():
    body = b'{"inputs": [{"name": "x", "shape": [2, 1, 2], "datatype": "INT32", "data": [[[1, 2]], [[3, 4]]]}]}'
    data = decode_infer_request(body, None).inputs[0].data
    assert data.shape == (2, 1, 2)
    assert data.ravel().tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("datatype", "expected"),
    [
        ("FP32", [1.0, np.nan]),
        ("INT64", [1.0, np.nan]),  # an integer tensor with a gap becomes float64 + NaN
    ],
)
def test_json_null_elements_become_missing_numbers(datatype, expected):
    body = f'{{"inputs": [{{"name": "x", "shape": [2], "datatype": "{datatype}", "data": [1, null]}}]}}'
    data = decode_infer_request(body.encode(), None).inputs[0].data
    np.testing.assert_array_equal(data, np.array(expected))


def test_json_null_elements_stay_none_in_bytes_and_bool_tensors():
    body = b"""{"inputs": [
        {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", null]},
        {"name": "b", "shape": [2], "datatype": "BOOL", "data": [null, true]}]}"""
    request = decode_infer_request(body, None)
    assert request.inputs[0].data.tolist() == ["a", None]
    assert request.inputs[1].data.tolist() == [None, True]


def test_binary_nan_arrives_as_nan():
    tensor = _decode_one(np.array([1.0, np.nan]), binary=True)
    assert np.isnan(tensor.data[1])


def test_empty_tensor_with_zero_rows_decodes():
    tensor = _decode_one(np.zeros((0, 3)), binary=True)
    assert tensor.data.shape == (0, 3)


# --- malformed requests ----------------------------------------------------------------------


def _error(body: bytes, header_length: int | None = None) -> MalformedRequestError:
    with pytest.raises(MalformedRequestError) as info:
        decode_infer_request(body, header_length)
    return info.value


def _json_input(**fields: Any) -> bytes:
    import json

    tensor = {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}
    tensor.update(fields)
    tensor = {k: v for k, v in tensor.items() if v is not ...}
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b'{"inputs": [}', b"\xff\xfe"],
    ids=["empty", "truncated", "text", "bad-array", "binary-garbage"],
)
def test_a_body_that_is_not_json_is_malformed(body):
    assert "not valid JSON" in _error(body).message


def test_binary_data_without_the_header_length_says_which_header_is_missing():
    body, _ = _binary_body(np.array([1.0, 2.0]))
    assert HEADER_LENGTH_HEADER in _error(body, None).message


@pytest.mark.parametrize("body", [b"[]", b"42", b'"inputs"', b"null"])
def test_a_top_level_value_that_is_not_an_object_is_malformed(body):
    assert "expected `object`" in _error(body).message


def test_a_request_without_inputs_names_the_field():
    error = _error(b'{"id": "1"}')
    assert error.field == "inputs"
    assert "required but missing" in error.message
    assert "Open Inference Protocol" in error.message  # the hint shows a valid request


def test_an_empty_inputs_list_is_malformed():
    assert _error(b'{"inputs": []}').field == "inputs"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            b'{"inputs": [{"name": "x", "shape": "2", "datatype": "FP64", "data": [1]}]}',
            "inputs[0].shape",
        ),
        (
            b'{"inputs": [{"name": 3, "shape": [1], "datatype": "FP64", "data": [1]}]}',
            "inputs[0].name",
        ),
        (b'{"inputs": {"name": "x"}}', "inputs"),
        (b'{"id": 42, "inputs": []}', "id"),
        (b'{"inputs": [], "outputs": [{"binary_data": true}]}', "outputs[0].name"),
        (b'{"inputs": [{"name": "x", "datatype": "FP64", "data": [1]}]}', "inputs[0].shape"),
    ],
)
def test_wrong_json_types_name_the_field(body, field):
    assert _error(body).field == field


def test_shape_and_data_length_mismatch_names_the_input():
    error = _error(_json_input(shape=[3]))
    assert error.field == "inputs[0].data"
    assert "holds 2 element(s) but shape [3] needs 3" in error.message
    assert "'x'" in error.message


def test_an_unknown_datatype_is_refused_with_the_list_of_known_ones():
    error = _error(_json_input(datatype="FLOAT64"))
    assert error.field == "inputs[0].datatype"
    assert "'FLOAT64'" in error.message
    assert "FP64" in error.message
    assert "BYTES" in error.message


def test_a_negative_dimension_is_refused():
    assert _error(_json_input(shape=[-1])).field == "inputs[0].shape"


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("FP64", [1.0, "2"], "element 1 is '2' but FP64 data are numbers"),
        ("INT32", [1, 2.5], "element 1 is 2.5 but INT32 data are integers"),
        ("BOOL", [1, 0], "element 0 is 1 but BOOL data are true or false"),
        ("BYTES", ["a", 2], "element 1 is 2 but BYTES data are strings"),
        ("FP32", [1.0, {"v": 1}], "element 1 is an object"),
    ],
)
def test_elements_of_the_wrong_type_are_named(datatype, data, expected):
    error = _error(_json_input(datatype=datatype, data=data))
    assert error.field == "inputs[0].data"
    assert expected in error.message


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("INT8", [1, 128]),
        ("UINT8", [-1, 0]),
        ("UINT64", [-1, 0]),
        ("INT64", [2**63, 0]),
        ("FP32", [1e39, 0]),
    ],
)
def test_values_that_do_not_fit_the_datatype_are_refused(datatype, data):
    error = _error(_json_input(datatype=datatype, data=data))
    assert error.field == "inputs[0].data"
    assert f"does not fit the datatype {datatype}" in error.message


def test_data_that_is_not_an_array_is_refused():
    assert "expected an array" in _error(_json_input(data=3)).message


def test_nesting_deeper_than_the_shape_is_refused():
    error = _error(_json_input(shape=[2], data=[[[1.0]], [[2.0]]]))
    assert "nested deeper" in error.message


def test_absurdly_deep_nesting_is_malformed_not_a_crash():
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": ' + deep + b"}]}"
    assert isinstance(_error(body), MalformedRequestError)


def test_an_input_without_data_is_refused():
    assert _error(_json_input(data=...)).field == "inputs[0].data"


def test_an_input_sent_twice_is_refused():
    body = b"""{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]},
                           {"name": "x", "shape": [1], "datatype": "FP64", "data": [2]}]}"""
    assert _error(body).field == "inputs[1].name"


def test_the_shared_memory_extension_is_refused_by_name():
    body = _json_input(parameters={"shared_memory_region": "r"})
    assert "shared-memory extension is not supported" in _error(body).message


def test_the_classification_extension_is_refused_by_name():
    body, header_length = triton_request(
        [triton_input("x", np.array([1.0]), binary=False)],
        outputs=[triton.InferRequestedOutput("label", class_count=2)],
    )
    assert _error(body, header_length).field == "outputs[0].parameters.classification"


def test_binary_data_output_must_be_a_boolean():
    body = b'{"parameters": {"binary_data_output": "yes"}, "inputs": []}'
    assert _error(body).field == "parameters.binary_data_output"


def test_a_requested_output_named_twice_is_refused():
    body, header_length = triton_request(
        [triton_input("x", np.array([1.0]), binary=False)],
        outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("label")],
    )
    assert _error(body, header_length).field == "outputs[1].name"


# --- malformed binary bodies -----------------------------------------------------------------


def _binary_body(array: np.ndarray[Any, Any]) -> tuple[bytes, int]:
    body, header_length = triton_request([triton_input("x", array, binary=True)])
    assert header_length is not None
    return body, header_length


@pytest.mark.parametrize("header_length", [-1, 10_000])
def test_a_header_length_outside_the_body_is_refused(header_length):
    body, _ = _binary_body(np.array([1.0, 2.0]))
    error = _error(body, header_length)
    assert error.field == HEADER_LENGTH_HEADER
    assert "outside the body" in error.message


def test_a_header_length_that_cuts_the_json_is_malformed_json():
    body, header_length = _binary_body(np.array([1.0, 2.0]))
    assert "not valid JSON" in _error(body, header_length - 3).message


def test_binary_data_shorter_than_declared_is_refused():
    body, header_length = _binary_body(np.array([1.0, 2.0]))
    error = _error(body[:-4], header_length)
    assert error.field == "inputs[0].parameters.binary_data_size"
    assert "declares 16 bytes but only 12 remain" in error.message


def test_bytes_after_the_last_binary_tensor_are_refused():
    body, header_length = _binary_body(np.array([1.0, 2.0]))
    error = _error(body + b"\x00" * 8, header_length)
    assert error.field == HEADER_LENGTH_HEADER


def test_binary_data_that_is_not_whole_elements_is_refused():
    body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 12}}]}'
    error = _error(body + b"\x00" * 12, len(body))
    assert "not a whole number of FP64 elements" in error.message


def test_binary_and_json_data_together_are_refused():
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0], "parameters": {"binary_data_size": 8}}]}'
    assert "both JSON data and binary_data_size" in _error(body + b"\x00" * 8, len(body)).message


@pytest.mark.parametrize("size", [-8, "8", True, 1.5])
def test_binary_data_size_must_be_a_byte_count(size):
    import json

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    assert (
        _error(header + b"\x00" * 8, len(header)).field == "inputs[0].parameters.binary_data_size"
    )


def _bytes_tensor(payload: bytes, count: int) -> tuple[bytes, int]:
    header = (
        f'{{"inputs": [{{"name": "s", "shape": [{count}], "datatype": "BYTES", '
        f'"parameters": {{"binary_data_size": {len(payload)}}}}}]}}'
    ).encode()
    return header + payload, len(header)


def test_bytes_with_a_length_prefix_beyond_the_data_are_refused():
    body, header_length = _bytes_tensor(b"\x05\x00\x00\x00abc", 1)
    error = _error(body, header_length)
    assert error.field == "inputs[0].data"
    assert "declares 5 bytes but only 3 remain" in error.message


def test_bytes_with_a_truncated_length_prefix_are_refused():
    body, header_length = _bytes_tensor(b"\x01\x00\x00\x00a\x01\x00", 2)
    assert "inside a 4-byte length prefix" in _error(body, header_length).message


def test_bytes_that_are_not_utf8_are_refused():
    body, header_length = _bytes_tensor(b"\x02\x00\x00\x00\xff\xfe", 1)
    error = _error(body, header_length)
    assert error.field == "inputs[0].data"
    assert "not valid UTF-8" in error.message


def test_bytes_element_count_must_match_the_shape():
    body, header_length = _bytes_tensor(b"\x01\x00\x00\x00a", 2)
    assert "holds 1 element(s) but shape [2] needs 2" in _error(body, header_length).message


def test_binary_bool_bytes_other_than_0_and_1_are_refused():
    header = b'{"inputs": [{"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]}'
    error = _error(header + b"\x01\x02", len(header))
    assert "BOOL element 1 is the byte 2" in error.message
