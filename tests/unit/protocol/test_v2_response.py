"""Output tensors and response bodies, proven readable by tritonclient (JSON and binary)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

import rtserve
from rtserve.bundle.schema import OutputSpec
from rtserve.engine.predictions import Predictions
from rtserve.errors import MalformedRequestError
from rtserve.protocol.v2 import (
    HEADER_LENGTH_HEADER,
    RequestedOutput,
    check_requested_outputs,
    columns_from_inputs,
    decode_infer_request,
    encode_infer_response,
    encode_model_metadata,
    encode_server_metadata,
    input_metadata,
    output_metadata,
    output_tensors,
)
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Task
from tests.unit.protocol.conftest import frame_inputs, triton_request


def _encode(
    predictions: Any,
    *,
    requested: list[RequestedOutput] | None = None,
    binary: bool,
    request_id: str | None = "r-1",
) -> tuple[bytes, dict[str, str]]:
    return encode_infer_response(
        model_name="risk",
        model_version="3",
        request_id=request_id,
        outputs=output_tensors(predictions),
        requested=requested,
        binary_default=binary,
    )


def _read(body: bytes, headers: dict[str, str]) -> triton.InferResult:
    """What tritonclient makes of the response (it reads the header length off the headers)."""
    length = headers.get(HEADER_LENGTH_HEADER)
    return triton.InferResult.from_response_body(
        body, header_length=int(length) if length is not None else None
    )


def _text(values: np.ndarray[Any, Any]) -> list[str]:
    """tritonclient returns BYTES as ``bytes`` from binary data and as ``str`` from JSON."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]


@pytest.fixture(scope="module")
def risk_predictions(risk_predictor: rtserve.Predictor, transactions: pd.DataFrame) -> Predictions:
    return risk_predictor.predict(transactions.head(12))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_reads_label_and_probabilities(risk_predictions, binary):
    body, headers = _encode(risk_predictions, binary=binary)
    assert (HEADER_LENGTH_HEADER in headers) is binary
    result = _read(body, headers)
    assert _text(result.as_numpy("label")) == risk_predictions.label.tolist()
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (12, 3)
    assert probabilities.dtype == np.float64
    np.testing.assert_array_equal(probabilities, risk_predictions.probabilities)


def test_the_response_names_the_model_and_echoes_the_request_id(risk_predictions):
    body, headers = _encode(risk_predictions, binary=False)
    document = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    assert document["model_name"] == "risk"
    assert document["model_version"] == "3"
    assert document["id"] == "r-1"
    assert [o["name"] for o in document["outputs"]] == ["label", "probabilities"]
    assert document["outputs"][1]["shape"] == [12, 3]
    assert "id" not in json.loads(_encode(risk_predictions, binary=False, request_id=None)[0])


def test_a_binary_response_is_json_header_then_tensor_bytes(risk_predictions):
    body, headers = _encode(risk_predictions, binary=True)
    assert headers["Content-Type"] == "application/octet-stream"
    length = int(headers[HEADER_LENGTH_HEADER])
    header = json.loads(body[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert all("data" not in o for o in header["outputs"])
    assert length + sum(sizes) == len(body)
    assert sizes[1] == 12 * 3 * 8  # FP64 probabilities


def test_requested_outputs_select_and_order_the_tensors_each_in_its_own_form(risk_predictions):
    requested = [
        RequestedOutput("probabilities", binary_data=True),
        RequestedOutput("label", binary_data=False),
    ]
    body, headers = _encode(risk_predictions, requested=requested, binary=False)
    result = _read(body, headers)
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["probabilities", "label"]
    assert "data" in outputs[1]
    assert "binary_data_size" in outputs[0]["parameters"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), risk_predictions.probabilities)
    assert _text(result.as_numpy("label")) == risk_predictions.label.tolist()


def test_an_output_without_its_own_flag_follows_the_request_default(risk_predictions):
    body, headers = _encode(risk_predictions, requested=[RequestedOutput("label")], binary=True)
    result = _read(body, headers)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert "binary_data_size" in result.get_output("label")["parameters"]


def test_an_unknown_requested_output_is_named_with_the_available_ones(risk_predictions):
    with pytest.raises(MalformedRequestError) as info:
        _encode(
            risk_predictions,
            requested=[RequestedOutput("label"), RequestedOutput("proba")],
            binary=False,
        )
    assert info.value.field == "outputs[1].name"
    assert "['proba']" in info.value.message
    assert "label, probabilities" in info.value.message


def test_requested_outputs_can_be_checked_before_predicting(risk_predictor):
    body, header_length = triton_request(
        frame_inputs(pd.DataFrame({"amount": [1.0]}), binary=True),
        outputs=[triton.InferRequestedOutput("score")],
    )
    request = decode_infer_request(body, header_length)
    with pytest.raises(MalformedRequestError) as info:
        check_requested_outputs(request, risk_predictor.schema)
    assert info.value.field == "outputs[0].name"


def test_integer_classes_are_int64_labels(fraud_predictor, transactions):
    predictions = fraud_predictor.predict(transactions.head(5))
    result = _read(*_encode(predictions, binary=True))
    label = result.as_numpy("label")
    assert label.dtype == np.int64
    assert label.tolist() == predictions.label.tolist()
    assert result.as_numpy("probabilities").shape == (5, 2)


def test_boolean_classes_are_bool_labels():
    spec = OutputSpec(task=Task.CLASSIFICATION, classes=[False, True], probabilities=False)
    predictions = Predictions(ModelOutput(label=np.array([True, False, True])), spec)
    for binary in (False, True):
        result = _read(*_encode(predictions, binary=binary))
        assert result.as_numpy("label").tolist() == [True, False, True]
        assert result.as_numpy("probabilities") is None


def test_a_regressor_answers_value_as_fp64(loss_predictor, transactions):
    predictions = loss_predictor.predict(transactions.head(6))
    for binary in (False, True):
        value = _read(*_encode(predictions, binary=binary)).as_numpy("value")
        assert value.shape == (6,)
        np.testing.assert_array_equal(value, predictions.value)


def test_a_multi_output_regressor_answers_n_by_w_values():
    spec = OutputSpec(task=Task.REGRESSION, width=2)
    values = np.array([[1.0, 2.0], [3.0, 4.5], [5.0, 6.0]])
    predictions = Predictions(ModelOutput(value=values), spec)
    (tensor,) = output_tensors(predictions)
    assert tensor.shape == (3, 2)
    np.testing.assert_array_equal(
        _read(*_encode(predictions, binary=True)).as_numpy("value"), values
    )


def test_nan_values_survive_binary_and_become_null_in_json():
    spec = OutputSpec(task=Task.REGRESSION)
    predictions = Predictions(ModelOutput(value=np.array([1.0, np.nan])), spec)
    assert np.isnan(_read(*_encode(predictions, binary=True)).as_numpy("value")[1])
    body, _ = _encode(predictions, binary=False)
    assert json.loads(body)["outputs"][0]["data"] == [1.0, None]


def test_output_metadata_describes_exactly_the_tensors_produced(
    risk_predictor, fraud_predictor, loss_predictor, transactions
):
    for predictor in (risk_predictor, fraud_predictor, loss_predictor):
        tensors = output_tensors(predictor.predict(transactions.head(3)))
        metadata = output_metadata(predictor.schema)
        assert [(m["name"], m["datatype"]) for m in metadata] == [
            (t.name, t.datatype) for t in tensors
        ]
        for meta, tensor in zip(metadata, tensors, strict=True):
            assert meta["shape"][0] == -1
            assert meta["shape"][1:] == list(tensor.shape[1:])


def test_a_tritonclient_round_trip_gives_the_in_process_predictions(risk_predictor, transactions):
    rows = transactions.dropna().head(8).reset_index(drop=True)
    body, header_length = triton_request(
        frame_inputs(rows, binary=True),
        outputs=[triton.InferRequestedOutput("label")],
        request_id="abc",
    )
    request = decode_infer_request(body, header_length)
    columns = risk_predictor.validator.columns(columns_from_inputs(request, risk_predictor.schema))
    predictions = risk_predictor.predict_columns(columns)
    payload, headers = encode_infer_response(
        model_name="risk",
        model_version="1",
        request_id=request.id,
        outputs=output_tensors(predictions),
        requested=request.outputs,
        binary_default=request.binary_outputs_default,
    )
    result = _read(payload, headers)
    assert result.get_response()["id"] == "abc"
    assert _text(result.as_numpy("label")) == risk_predictor.predict(rows).label.tolist()


# --- health and metadata ---------------------------------------------------------------------


def test_server_metadata_has_the_specs_required_fields():
    document = json.loads(encode_server_metadata("rtserve", "0.1.0"))
    assert document == {"name": "rtserve", "version": "0.1.0", "extensions": ["binary_tensor_data"]}


def test_model_metadata_has_the_specs_fields_and_optional_properties(numeric_predictor):
    schema = numeric_predictor.schema
    body = encode_model_metadata(
        "risk-numeric",
        ["1"],
        "sklearn_skops",
        input_metadata(schema),
        output_metadata(schema),
        properties={"state": "ready"},
    )
    document = json.loads(body)
    assert document["name"] == "risk-numeric"
    assert document["versions"] == ["1"]
    assert document["platform"] == "sklearn_skops"
    assert document["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]
    assert document["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert document["properties"] == {"state": "ready"}
    assert "properties" not in json.loads(encode_model_metadata("m", [], "p", [], []))
