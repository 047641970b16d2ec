"""Specification: scikit-learn models predict through a bundle exactly as they do in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve import Predictor, UnseenPolicy
from rtserve.errors import PredictionError, UnsupportedModelError, ValidationError
from rtserve.runtimes import trusted_types
from rtserve.types import Task

BuildAndLoad = Callable[..., Predictor]
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def holdout(holdout_transactions: pd.DataFrame) -> pd.DataFrame:
    return holdout_transactions


def _assert_close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=TOLERANCE)


def test_a_binary_pipeline_predicts_exactly_as_in_memory(
    fraud_predictor: Predictor, fraud_pipeline: Any, holdout: pd.DataFrame
) -> None:
    for data in (holdout, holdout.to_dict("records")):
        predictions = fraud_predictor.predict(data)
        _assert_close(predictions.probabilities, fraud_pipeline.predict_proba(holdout))
        assert predictions.label is not None
        assert predictions.label.tolist() == fraud_pipeline.predict(holdout).tolist()
    assert fraud_predictor.schema.outputs.classes == [0, 1]


def test_a_multiclass_pipeline_with_string_classes_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    risk_pipeline: Any,
    transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    predictor = build_and_load(risk_pipeline, transactions, name="risk")
    predictions = predictor.predict(holdout.to_dict("records"))
    _assert_close(predictions.probabilities, risk_pipeline.predict_proba(holdout))
    assert predictions.label is not None
    assert predictions.label.tolist() == risk_pipeline.predict(holdout).tolist()
    assert predictions.classes == ["high", "low", "medium"]


def test_a_regression_pipeline_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    loss_pipeline: Any,
    transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    predictor = build_and_load(loss_pipeline, transactions, name="loss")
    predictions = predictor.predict(holdout)
    assert predictor.schema.outputs.task is Task.REGRESSION
    _assert_close(predictions.value, loss_pipeline.predict(holdout))
    assert predictions.label is None
    assert predictions.probabilities is None


def test_a_plain_estimator_fit_on_a_numpy_array_takes_positional_field_names(
    build_and_load: BuildAndLoad,
) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 4))
    target = (features[:, 0] + features[:, 2] > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(features, target)
    predictor = build_and_load(model, features)
    assert predictor.schema.field_names == ["f0", "f1", "f2", "f3"]
    new = rng.normal(size=(30, 4))
    records = [{f"f{j}": float(row[j]) for j in range(4)} for row in new]
    predictions = predictor.predict(records)
    _assert_close(predictions.probabilities, model.predict_proba(new))
    assert predictions.label is not None
    assert predictions.label.tolist() == model.predict(new).tolist()


def test_a_plain_regressor_on_numpy_predicts_exactly(build_and_load: BuildAndLoad) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(4)
    features = rng.normal(size=(100, 3))
    model = LinearRegression().fit(features, features @ [1.0, -2.0, 0.5])
    predictor = build_and_load(model, features)
    new = rng.normal(size=(10, 3))
    predictions = predictor.predict({"f0": new[:, 0], "f1": new[:, 1], "f2": new[:, 2]})
    _assert_close(predictions.value, model.predict(new))


def test_a_classifier_without_predict_proba_gives_labels_only(build_and_load: BuildAndLoad) -> None:
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(5)
    features = rng.normal(size=(80, 2))
    model = LinearSVC().fit(features, (features[:, 0] > 0).astype(int))
    predictor = build_and_load(model, features)
    predictions = predictor.predict({"f0": features[:, 0], "f1": features[:, 1]})
    assert predictor.schema.outputs.probabilities is False
    assert predictions.probabilities is None
    assert predictions.label is not None
    assert predictions.label.tolist() == model.predict(features).tolist()


def test_pipelines_are_stored_with_skops_trusting_only_allow_listed_types(
    fraud_predictor: Predictor,
) -> None:
    from sklearn.base import BaseEstimator

    runtime = fraud_predictor.bundle.manifest.runtime
    assert (runtime.format, runtime.unsafe, runtime.files) == (
        "skops",
        False,
        ["model/model.skops"],
    )
    assert runtime.options["trusted_types"]  # skops is told exactly what to trust ...
    assert all(  # ... and each of those is on rtserve's allow-list
        trusted_types.allows_any_role(t, BaseEstimator) for t in runtime.options["trusted_types"]
    )


def test_a_model_that_fails_on_unseen_categories_gets_them_rejected_by_the_schema(
    build_and_load: BuildAndLoad, transactions: pd.DataFrame, holdout: pd.DataFrame
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    strict = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["country"]), ("passthrough", ["hour"])),
        LogisticRegression(),
    ).fit(transactions[["country", "hour"]], transactions["hour"] > 11)
    predictor = build_and_load(strict, transactions[["country", "hour"]])
    assert predictor.schema.field("country").unseen is UnseenPolicy.REJECT
    with pytest.raises(ValidationError, match="'XX' is not one of the allowed values"):
        predictor.predict({"country": "XX", "hour": 3})


def test_a_model_that_only_warns_on_unseen_categories_keeps_them_passing(
    build_and_load: BuildAndLoad, transactions: pd.DataFrame
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    lenient = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="warn"), ["country"]), ("passthrough", ["hour"])
        ),
        LogisticRegression(),
    ).fit(transactions[["country", "hour"]], transactions["hour"] > 11)
    # The build's probe must not mistake the warning for a failure, even where warnings are
    # errors (as in this test suite).
    predictor = build_and_load(lenient, transactions[["country", "hour"]])
    assert predictor.schema.field("country").unseen is UnseenPolicy.PASS
    with pytest.warns(UserWarning, match="unknown categories"):
        predictions = predictor.predict({"country": "XX", "hour": 3})
    with pytest.warns(UserWarning, match="unknown categories"):
        expected = lenient.predict_proba(pd.DataFrame({"country": ["XX"], "hour": [3]}))
    _assert_close(predictions.probabilities, expected)


def test_a_model_failure_on_valid_input_is_a_prediction_error(
    build_and_load: BuildAndLoad, transactions: pd.DataFrame
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    strict = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["country"]), ("passthrough", ["hour"])),
        LogisticRegression(),
    ).fit(transactions[["country", "hour"]], transactions["hour"] > 11)
    # An explicit override keeps `unseen: pass`, so the unknown value reaches the model.
    predictor = build_and_load(
        strict, transactions[["country", "hour"]], schema_overrides={"country": {"unseen": "pass"}}
    )
    with pytest.raises(PredictionError, match="model model:1 failed to predict: ValueError"):
        predictor.predict({"country": "XX", "hour": 3})


def test_an_unfitted_estimator_is_refused(transactions: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(UnsupportedModelError, match=r"is not fitted; call .fit"):
        rtserve.build(LogisticRegression(), transactions, name="x", version="1")


def test_an_object_no_runtime_knows_is_refused(transactions: pd.DataFrame) -> None:
    with pytest.raises(UnsupportedModelError, match=r"cannot package a builtins.dict"):
        rtserve.build({"weights": [1, 2]}, transactions, name="x", version="1")
