"""The records API codec."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import rtserve
from rtserve.errors import (
    MalformedRequestError,
)
from rtserve.protocol.records import decode_predict_request, encode_predict_response


def test_instances_and_parameters_are_returned_as_they_came():
    body = b'{"instances": [{"amount": 12.5, "country": "FR"}, {"amount": null}], "parameters": {"explain": false}}'
    instances, parameters = decode_predict_request(body)
    assert instances == [{"amount": 12.5, "country": "FR"}, {"amount": None}]
    assert parameters == {"explain": False}


def test_parameters_are_optional():
    assert decode_predict_request(b'{"instances": [{}]}') == ([{}], {})


@pytest.mark.parametrize(
    ("body", "field", "phrase"),
    [
        (b"{nope", None, "not valid JSON"),
        (b"[]", None, "expected `object`"),
        (b'{"rows": []}', "instances", "required but missing"),
        (b'{"instances": {"amount": 1}}', "instances", "expected `array`"),
        (b'{"instances": [{"amount": 1}, 3]}', "instances[1]", "expected `object`, got `int`"),
        (
            b'{"instances": [], "parameters": []}',
            "parameters",
            "expected `object | null`, got `array`",
        ),
    ],
)
def test_malformed_predict_requests_name_the_field(body, field, phrase):
    with pytest.raises(MalformedRequestError) as info:
        decode_predict_request(body)
    assert info.value.field == field
    assert phrase in info.value.message
    assert '{"instances": [{"field": value, ...}, ...]}' in info.value.message  # the hint


def test_deep_nesting_in_a_record_is_malformed_not_a_crash():
    body = b'{"instances": [{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    with pytest.raises(MalformedRequestError):
        decode_predict_request(body)


def test_the_response_has_predictions_model_and_request_id(
    risk_predictor: rtserve.Predictor, transactions: pd.DataFrame
):
    predictions = risk_predictor.predict(transactions.head(3))
    document = json.loads(
        encode_predict_response(predictions, name="risk", version="1", request_id="req-9")
    )
    assert document["model"] == {"name": "risk", "version": "1"}
    assert document["request_id"] == "req-9"
    assert document["predictions"] == predictions.to_records()
    assert set(document["predictions"][0]["probabilities"]) == {"high", "low", "medium"}
