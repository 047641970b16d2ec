"""Specification: the in-process Predictor takes records, a record, columns or a DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve import Predictor
from rtserve.engine.predictor import ParityReport
from rtserve.errors import MalformedRequestError, ValidationError
from rtserve.runtimes.base import Description
from rtserve.runtimes.sklearn import SklearnAdapter
from rtserve.types import Task

ROW = {
    "amount": 250.0,
    "hour": 2,
    "prior_transactions": 1,
    "country": "US",
    "merchant": "electronics",
    "card_present": False,
}


def test_predict_takes_a_single_record(fraud_predictor: Predictor, fraud_pipeline: Any) -> None:
    predictions = fraud_predictor.predict(ROW)
    expected = fraud_pipeline.predict_proba(pd.DataFrame([ROW]).astype({"country": "str"}))
    assert len(predictions) == 1
    np.testing.assert_allclose(predictions.probabilities, expected, rtol=0, atol=1e-9)


def test_a_record_of_numpy_scalars_is_one_record(fraud_predictor: Predictor) -> None:
    record = {
        **ROW,
        "amount": np.float64(250.0),
        "hour": np.int64(2),
        "prior_transactions": np.int32(1),
        "card_present": np.bool_(False),
    }
    assert fraud_predictor.predict(record).to_records() == fraud_predictor.predict(ROW).to_records()
    only_numbers = {"f0": np.float64(1.0), "f1": np.float64(2.0)}
    with pytest.raises(ValidationError, match="not a field of this model"):
        fraud_predictor.predict(only_numbers)  # a record, so: unknown fields, not a shape error


def test_records_columns_and_a_dataframe_give_the_same_predictions(
    fraud_predictor: Predictor, holdout_transactions: pd.DataFrame
) -> None:
    frame = holdout_transactions.head(20)
    by_frame = fraud_predictor.predict(frame)
    by_records = fraud_predictor.predict(frame.to_dict("records"))
    by_columns = fraud_predictor.predict({name: frame[name].tolist() for name in frame.columns})
    for other in (by_records, by_columns):
        np.testing.assert_array_equal(other.probabilities, by_frame.probabilities)
        np.testing.assert_array_equal(other.label, by_frame.label)


def test_predictions_become_json_ready_records(fraud_predictor: Predictor) -> None:
    (record,) = fraud_predictor.predict(ROW).to_records()
    assert set(record) == {"label", "probabilities"}
    assert type(record["label"]) is int
    assert set(record["probabilities"]) == {"0", "1"}
    assert sum(record["probabilities"].values()) == pytest.approx(1.0)


def test_predictions_become_a_dataframe(
    fraud_predictor: Predictor, holdout_transactions: pd.DataFrame
) -> None:
    predictions = fraud_predictor.predict(holdout_transactions.head(5))
    frame = predictions.to_frame()
    assert list(frame.columns) == ["label", "proba_0", "proba_1"]
    assert len(frame) == 5
    assert predictions.task is Task.CLASSIFICATION
    assert predictions.classes == [0, 1]


def test_regression_predictions_as_records_and_frame(
    loss_pipeline: Any, transactions: pd.DataFrame, tmp_path: Path
) -> None:
    predictor = rtserve.load(
        rtserve.build(loss_pipeline, transactions, name="loss", version="1", optimize="off").save(
            tmp_path / "l"
        )
    )
    predictions = predictor.predict(transactions.head(3))
    records = predictions.to_records()
    assert [set(r) for r in records] == [{"value"}] * 3
    assert [r["value"] for r in records] == loss_pipeline.predict(transactions.head(3)).tolist()
    assert list(predictions.to_frame().columns) == ["value"]


def test_an_invalid_request_reports_every_field_before_the_model_runs(
    fraud_predictor: Predictor,
) -> None:
    with pytest.raises(ValidationError) as caught:
        fraud_predictor.predict([{**ROW, "amount": "lots", "hour": None}, {**ROW, "country": 7}])
    assert [(v.field, v.row) for v in caught.value.violations] == [
        ("amount", 0),
        ("hour", 0),
        ("country", 1),
    ]


@pytest.mark.parametrize("data", ["amount=5", 42, None, b"{}", np.zeros((2, 6))])
def test_data_of_no_known_shape_is_malformed(fraud_predictor: Predictor, data: Any) -> None:
    with pytest.raises(MalformedRequestError, match="cannot predict on a"):
        fraud_predictor.predict(data)


def test_check_parity_passes_on_a_fresh_bundle(fraud_predictor: Predictor) -> None:
    report = fraud_predictor.check_parity()
    assert report.passed
    assert report.rows == 200
    assert report.max_abs_diff < 1e-12  # the ONNX export serves; it computes in double precision
    assert report.label_mismatch_rate == 0.0
    assert "matches the recorded outputs" in report.describe()


def test_check_parity_fails_when_the_runtime_answers_differently(
    fraud_predictor: Predictor, risk_pipeline: Any
) -> None:
    bundle = fraud_predictor.bundle
    # A real runtime of another model (the risk classifier) behind the fraud bundle's schema.
    wrong_runtime = SklearnAdapter().wrap(
        risk_pipeline,
        Description(
            outputs=bundle.manifest.model_schema.outputs.model_copy(
                update={"classes": ["high", "low", "medium"]}
            ),
            input_frame=bundle.manifest.input_frame,
            options={},
        ),
    )
    assert wrong_runtime is not None
    report = Predictor(bundle, wrong_runtime).check_parity()
    assert not report.passed
    assert "does NOT match" in report.describe()


def test_parity_report_applies_its_tolerance() -> None:
    assert ParityReport(10, 1e-6, 0.0, tolerance=1e-5).passed
    assert not ParityReport(10, 1e-4, 0.0, tolerance=1e-5).passed
    assert not ParityReport(10, 0.0, 0.1, tolerance=1e-5).passed


def test_a_predictor_names_its_model(fraud_predictor: Predictor) -> None:
    assert (fraud_predictor.name, fraud_predictor.version) == ("fraud", "1")
    assert fraud_predictor.digest == fraud_predictor.bundle.digest
    assert repr(fraud_predictor) == "Predictor(name='fraud', version='1')"
