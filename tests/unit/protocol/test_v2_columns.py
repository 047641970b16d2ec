"""Mapping decoded tensors to schema fields, and the input metadata that tells clients the layout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.errors import MalformedRequestError, ValidationError
from rtserve.protocol.v2 import columns_from_inputs, decode_infer_request, input_metadata
from tests.unit.protocol.conftest import frame_inputs, triton_input, triton_request


def _predict_from_body(predictor: rtserve.Predictor, body: bytes, header_length: int | None) -> Any:
    request = decode_infer_request(body, header_length)
    columns = columns_from_inputs(request, predictor.schema)
    return predictor.predict_columns(predictor.validator.columns(columns))


def _complete_rows(transactions: pd.DataFrame, n: int = 25) -> pd.DataFrame:
    """Rows without missing values (a JSON body cannot carry NaN; tritonclient cannot send None)."""
    return transactions.dropna().head(n).reset_index(drop=True)


def _same_predictions(actual: Any, expected: Any) -> None:
    assert actual.label.tolist() == expected.label.tolist()
    np.testing.assert_allclose(actual.probabilities, expected.probabilities, rtol=0, atol=0)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_one_input_per_field_predicts_like_the_records_api(risk_predictor, transactions, binary):
    rows = _complete_rows(transactions)
    body, header_length = triton_request(frame_inputs(rows, binary=binary))
    actual = _predict_from_body(risk_predictor, body, header_length)
    _same_predictions(actual, risk_predictor.predict(rows.to_dict("records")))


def test_fields_may_arrive_as_n_by_1_columns(risk_predictor, transactions):
    rows = _complete_rows(transactions, 5)
    inputs = []
    for name in rows.columns:
        values = rows[name].to_numpy() if rows[name].dtype.kind in "fiub" else rows[name].tolist()
        array = np.array(values, dtype=object if name in ("country", "merchant") else None)
        inputs.append(triton_input(name, array.reshape(-1, 1), binary=True))
    actual = _predict_from_body(risk_predictor, *triton_request(inputs))
    _same_predictions(actual, risk_predictor.predict(rows))


def test_missing_values_travel_in_binary_float_tensors(risk_predictor, transactions):
    rows = transactions.dropna(subset=["merchant"]).head(40).reset_index(drop=True)
    assert rows["amount"].isna().any()
    actual = _predict_from_body(risk_predictor, *triton_request(frame_inputs(rows, binary=True)))
    _same_predictions(actual, risk_predictor.predict(rows))


def test_json_null_is_a_missing_value_for_the_validator(risk_predictor, transactions):
    rows = _complete_rows(transactions, 2)
    body, _ = triton_request(frame_inputs(rows.drop(columns=["merchant"]), binary=False))
    body = body.replace(
        b'"inputs":[',
        b'"inputs":[{"name":"merchant","shape":[2],"datatype":"BYTES","data":[null,"fuel"]},',
    )
    actual = _predict_from_body(risk_predictor, body, None)
    expected = risk_predictor.predict(rows.assign(merchant=[None, "fuel"]).to_dict("records"))
    _same_predictions(actual, expected)


def test_an_absent_field_gets_the_schemas_missing_value_policy(risk_predictor, transactions):
    rows = _complete_rows(transactions, 3)
    # merchant may be missing (policy "pass"); hour may not (policy "reject").
    ok = _predict_from_body(
        risk_predictor, *triton_request(frame_inputs(rows.drop(columns=["merchant"]), binary=True))
    )
    assert len(ok.label) == 3
    with pytest.raises(ValidationError) as info:
        _predict_from_body(
            risk_predictor, *triton_request(frame_inputs(rows.drop(columns=["hour"]), binary=True))
        )
    assert info.value.fields == ["hour"]


@pytest.mark.parametrize("name", ["input", "features"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_an_all_numeric_model_takes_one_n_by_f_tensor_of_any_name(
    numeric_predictor, numeric_frame, name, binary
):
    rows = numeric_frame.dropna().head(30)
    matrix = rows.to_numpy(dtype=np.float64)  # bools as 0.0 / 1.0, ints as floats
    actual = _predict_from_body(
        numeric_predictor, *triton_request([triton_input(name, matrix, binary=binary)])
    )
    _same_predictions(actual, numeric_predictor.predict(rows))


def test_the_n_by_f_tensor_carries_nan_as_a_missing_value(numeric_predictor, numeric_frame):
    rows = numeric_frame.head(40)
    assert rows["amount"].isna().any()
    matrix = rows.to_numpy(dtype=np.float64)
    actual = _predict_from_body(
        numeric_predictor, *triton_request([triton_input("input", matrix, binary=True)])
    )
    _same_predictions(actual, numeric_predictor.predict(rows))


def test_matrix_columns_convert_exactly_to_int_and_bool_fields(numeric_predictor):
    matrix = np.array([[12.5, 3.0, 1.0], [99.0, 23.0, 0.0]])
    request = decode_infer_request(*triton_request([triton_input("input", matrix, binary=True)]))
    columns = columns_from_inputs(request, numeric_predictor.schema)
    assert list(columns) == ["amount", "hour", "card_present"]
    assert np.asarray(columns["hour"]).dtype == np.int64
    assert np.asarray(columns["card_present"]).tolist() == [True, False]


def test_a_bool_field_given_a_number_other_than_0_or_1_is_a_validation_error(numeric_predictor):
    matrix = np.array([[12.5, 3.0, 0.5]])
    with pytest.raises(ValidationError) as info:
        _predict_from_body(
            numeric_predictor, *triton_request([triton_input("input", matrix, binary=True)])
        )
    assert info.value.fields == ["card_present"]


def test_an_int_field_given_a_fraction_is_a_validation_error(numeric_predictor):
    matrix = np.array([[12.5, 3.5, 1.0]])
    with pytest.raises(ValidationError) as info:
        _predict_from_body(
            numeric_predictor, *triton_request([triton_input("input", matrix, binary=True)])
        )
    assert info.value.fields == ["hour"]


def test_an_all_numeric_model_also_takes_one_input_per_field(numeric_predictor, numeric_frame):
    rows = numeric_frame.head(10)
    actual = _predict_from_body(numeric_predictor, *triton_request(frame_inputs(rows, binary=True)))
    _same_predictions(actual, numeric_predictor.predict(rows))


def _columns_error(predictor: rtserve.Predictor, inputs: list[Any]) -> MalformedRequestError:
    request = decode_infer_request(*triton_request(inputs))
    with pytest.raises(MalformedRequestError) as info:
        columns_from_inputs(request, predictor.schema)
    return info.value


def test_a_matrix_with_the_wrong_number_of_columns_names_the_input_and_the_fields(
    numeric_predictor,
):
    error = _columns_error(
        numeric_predictor, [triton_input("input", np.zeros((2, 4)), binary=True)]
    )
    assert error.field == "inputs[0].shape"
    assert "'input' has shape [2, 4]" in error.message
    assert "3 fields (amount, hour, card_present)" in error.message


def test_a_bytes_matrix_is_refused_for_a_numeric_model(numeric_predictor):
    matrix = np.array([["1", "2", "3"]], dtype=object)
    assert (
        _columns_error(numeric_predictor, [triton_input("input", matrix, binary=True)]).field
        == "inputs[0].datatype"
    )


def test_unknown_input_names_are_listed_with_the_expected_ones(risk_predictor):
    error = _columns_error(
        risk_predictor,
        [
            triton_input("amount", np.array([1.0]), binary=True),
            triton_input("amont", np.array([1.0]), binary=True),
        ],
    )
    assert error.field == "inputs[1].name"
    assert "['amont']" in error.message
    assert "amount, hour, prior_transactions, country, merchant, card_present" in error.message


def test_an_unknown_single_input_of_a_numeric_model_mentions_both_layouts(numeric_predictor):
    error = _columns_error(
        numeric_predictor, [triton_input("x", np.array([1.0, 2.0]), binary=True)]
    )
    assert "['x']" in error.message
    assert "single [N, 3] tensor" in error.message


def test_a_field_tensor_with_more_than_one_column_is_refused(risk_predictor):
    error = _columns_error(risk_predictor, [triton_input("amount", np.zeros((2, 2)), binary=True)])
    assert error.field == "inputs[0].shape"
    assert "shape [N] or [N, 1]" in error.message


def test_fields_with_different_row_counts_are_refused(risk_predictor):
    error = _columns_error(
        risk_predictor,
        [
            triton_input("amount", np.zeros(2), binary=True),
            triton_input("hour", np.zeros(3, dtype=np.int64), binary=True),
        ],
    )
    assert error.field == "inputs"
    assert "{'amount': 2, 'hour': 3}" in error.message


def test_strings_for_a_numeric_field_reach_the_validator_as_strings(risk_predictor, transactions):
    rows = _complete_rows(transactions, 1)
    inputs = [i for i in frame_inputs(rows, binary=True) if i.name() != "hour"]
    inputs.append(triton_input("hour", np.array(["three"], dtype=object), binary=True))
    with pytest.raises(ValidationError) as info:
        _predict_from_body(risk_predictor, *triton_request(inputs))
    assert info.value.fields == ["hour"]
    assert "'three' is not an int" in info.value.message


# --- input metadata --------------------------------------------------------------------------


def test_an_all_numeric_model_advertises_exactly_one_n_by_f_input(numeric_predictor):
    assert input_metadata(numeric_predictor.schema) == [
        {"name": "input", "datatype": "FP64", "shape": [-1, 3]}
    ]


def test_a_mixed_model_advertises_one_typed_input_per_field(risk_predictor):
    assert input_metadata(risk_predictor.schema) == [
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
        {"name": "hour", "datatype": "INT64", "shape": [-1]},
        {"name": "prior_transactions", "datatype": "INT64", "shape": [-1]},
        {"name": "country", "datatype": "BYTES", "shape": [-1]},
        {"name": "merchant", "datatype": "BYTES", "shape": [-1]},
        {"name": "card_present", "datatype": "BOOL", "shape": [-1]},
    ]


def test_a_generic_client_can_build_a_request_from_the_metadata_alone(
    numeric_predictor, numeric_frame
):
    from tritonclient.utils import triton_to_np_dtype

    (meta,) = input_metadata(numeric_predictor.schema)
    rows = numeric_frame.dropna().head(4)
    matrix = rows.to_numpy().astype(triton_to_np_dtype(meta["datatype"]))
    assert matrix.shape[1] == meta["shape"][1]
    actual = _predict_from_body(
        numeric_predictor, *triton_request([triton_input(meta["name"], matrix, binary=True)])
    )
    _same_predictions(actual, numeric_predictor.predict(rows))
