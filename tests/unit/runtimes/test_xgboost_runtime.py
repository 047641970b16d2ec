"""Specification: XGBoost wrappers and native Boosters predict through a bundle as in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from rtserve import Predictor
from rtserve.types import Task

BuildAndLoad = Callable[..., Predictor]
TOLERANCE = 1e-9


def _assert_close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=TOLERANCE)


def _categorical(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in ("country", "merchant"):
        out[name] = pd.Categorical(out[name], categories=like[name].cat.categories)
    return out


@pytest.fixture(scope="module")
def holdout(
    holdout_transactions: pd.DataFrame, categorical_transactions: pd.DataFrame
) -> pd.DataFrame:
    return _categorical(holdout_transactions, categorical_transactions)


def test_xgb_classifier_with_category_columns_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    fraud_labels: Any,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    model = xgb.XGBClassifier(
        n_estimators=15, max_depth=3, enable_categorical=True, tree_method="hist"
    ).fit(categorical_transactions, fraud_labels)
    predictor = build_and_load(model, categorical_transactions)
    assert predictor.bundle.manifest.runtime.format == "xgboost-ubj"
    # Clients send plain strings; the bundle rebuilds the training categories.
    predictions = predictor.predict(holdout_transactions.to_dict("records"))
    _assert_close(predictions.probabilities, model.predict_proba(holdout))
    assert predictions.label is not None
    assert predictions.label.tolist() == model.predict(holdout).tolist()


def test_xgb_multiclass_classifier_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad, transactions: pd.DataFrame, holdout_transactions: pd.DataFrame
) -> None:
    numeric = ["amount", "hour", "prior_transactions", "card_present"]
    target = np.digitize(transactions["hour"], [8, 16])  # classes 0, 1, 2
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(transactions[numeric], target)
    predictor = build_and_load(model, transactions[numeric])
    predictions = predictor.predict(holdout_transactions[numeric])
    _assert_close(predictions.probabilities, model.predict_proba(holdout_transactions[numeric]))
    assert predictions.classes == [0, 1, 2]


def test_xgb_regressor_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    target = categorical_transactions["amount"].fillna(0) * 0.1
    model = xgb.XGBRegressor(n_estimators=15, max_depth=3, enable_categorical=True).fit(
        categorical_transactions, target
    )
    predictor = build_and_load(model, categorical_transactions)
    assert predictor.schema.outputs.task is Task.REGRESSION
    _assert_close(
        predictor.predict(holdout_transactions.to_dict("records")).value, model.predict(holdout)
    )


def test_native_booster_with_categories_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    fraud_labels: Any,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    train = xgb.DMatrix(categorical_transactions, fraud_labels, enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, train, 10)
    predictor = build_and_load(booster, categorical_transactions)
    expected = booster.predict(xgb.DMatrix(holdout, enable_categorical=True))
    predictions = predictor.predict(holdout_transactions)
    assert predictions.probabilities is not None
    assert predictions.label is not None
    _assert_close(predictions.probabilities[:, 1], expected)
    _assert_close(predictions.probabilities[:, 0], 1.0 - expected)
    assert predictions.label.tolist() == (expected > 0.5).astype(int).tolist()


def test_native_booster_on_a_numpy_matrix_multiclass(build_and_load: BuildAndLoad) -> None:
    rng = np.random.default_rng(8)
    features = rng.normal(size=(150, 3))
    target = np.digitize(features[:, 0], [-0.5, 0.5])
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
        xgb.DMatrix(features, target),
        8,
    )
    predictor = build_and_load(booster, features)
    new = rng.normal(size=(20, 3))
    expected = booster.predict(xgb.DMatrix(new))
    predictions = predictor.predict({"f0": new[:, 0], "f1": new[:, 1], "f2": new[:, 2]})
    _assert_close(predictions.probabilities, expected)
    assert predictions.label is not None
    assert predictions.label.tolist() == expected.argmax(axis=1).tolist()


def test_native_regression_booster_predicts_exactly(build_and_load: BuildAndLoad) -> None:
    rng = np.random.default_rng(9)
    features = pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "b"])
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(features, features["a"] * 3), 5)
    predictor = build_and_load(booster, features)
    _assert_close(predictor.predict(features).value, booster.predict(xgb.DMatrix(features)))


def test_a_booster_and_a_sample_with_other_columns_are_refused(
    categorical_transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from rtserve import build
    from rtserve.errors import UnsupportedModelError

    train = xgb.DMatrix(categorical_transactions, fraud_labels, enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic"}, train, 2)
    with pytest.raises(UnsupportedModelError, match="trained on features"):
        build(booster, categorical_transactions[["amount", "hour"]], name="x", version="1")


def test_an_unseen_category_reaches_the_model_as_a_missing_value(
    build_and_load: BuildAndLoad, categorical_transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    model = xgb.XGBClassifier(
        n_estimators=15, max_depth=3, enable_categorical=True, tree_method="hist"
    ).fit(categorical_transactions, fraud_labels)
    predictor = build_and_load(model, categorical_transactions)
    assert predictor.schema.field("merchant").unseen.value == "pass"
    row = {
        "amount": 120.0,
        "hour": 3,
        "prior_transactions": 2,
        "country": "US",
        "card_present": False,
    }
    unseen = predictor.predict({**row, "merchant": "casino"})
    missing = predictor.predict({**row, "merchant": None})
    np.testing.assert_array_equal(unseen.probabilities, missing.probabilities)
