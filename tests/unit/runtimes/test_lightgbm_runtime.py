"""Specification: LightGBM wrappers and native Boosters predict through a bundle as in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from rtserve import Predictor
from rtserve.types import Task

BuildAndLoad = Callable[..., Predictor]
TOLERANCE = 1e-9
PARAMS: dict[str, Any] = {
    "n_estimators": 15,
    "num_leaves": 8,
    "min_child_samples": 5,
    "verbose": -1,
}


def _assert_close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def holdout(
    holdout_transactions: pd.DataFrame, categorical_transactions: pd.DataFrame
) -> pd.DataFrame:
    out = holdout_transactions.copy()
    for name in ("country", "merchant"):
        out[name] = pd.Categorical(
            out[name], categories=categorical_transactions[name].cat.categories
        )
    return out


def test_lgbm_classifier_with_category_columns_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    fraud_labels: Any,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    model = lgb.LGBMClassifier(**PARAMS).fit(categorical_transactions, fraud_labels)
    predictor = build_and_load(model, categorical_transactions)
    assert predictor.bundle.manifest.runtime.format == "lightgbm-text"
    predictions = predictor.predict(holdout_transactions.to_dict("records"))
    _assert_close(predictions.probabilities, model.predict_proba(holdout))
    assert predictions.label is not None
    assert predictions.label.tolist() == model.predict(holdout).tolist()


def test_lgbm_multiclass_with_string_labels_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    amount = categorical_transactions["amount"].fillna(0)
    target = np.where(amount > 100, "high", np.where(amount > 40, "medium", "low"))
    model = lgb.LGBMClassifier(**PARAMS).fit(categorical_transactions, target)
    predictor = build_and_load(model, categorical_transactions)
    predictions = predictor.predict(holdout_transactions)
    _assert_close(predictions.probabilities, model.predict_proba(holdout))
    assert predictions.label is not None
    assert predictions.label.tolist() == model.predict(holdout).tolist()
    assert predictions.classes == ["high", "low", "medium"]


def test_lgbm_regressor_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    target = categorical_transactions["amount"].fillna(0) * 0.1
    model = lgb.LGBMRegressor(**PARAMS).fit(categorical_transactions, target)
    predictor = build_and_load(model, categorical_transactions)
    assert predictor.schema.outputs.task is Task.REGRESSION
    _assert_close(predictor.predict(holdout_transactions).value, model.predict(holdout))


def test_lgbm_classifier_fit_on_numpy_predicts_exactly(build_and_load: BuildAndLoad) -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(200, 3))
    model = lgb.LGBMClassifier(**PARAMS).fit(features, (features[:, 1] > 0).astype(int))
    predictor = build_and_load(model, features)
    new = rng.normal(size=(25, 3))
    predictions = predictor.predict([{f"f{j}": float(v) for j, v in enumerate(row)} for row in new])
    _assert_close(predictions.probabilities, model.predict_proba(new))


def test_native_booster_predicts_exactly_as_in_memory(
    build_and_load: BuildAndLoad,
    categorical_transactions: pd.DataFrame,
    fraud_labels: Any,
    holdout_transactions: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 8, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(categorical_transactions, fraud_labels),
        num_boost_round=10,
    )
    predictor = build_and_load(booster, categorical_transactions)
    expected = booster.predict(holdout)
    predictions = predictor.predict(holdout_transactions.to_dict("records"))
    assert predictions.probabilities is not None
    assert predictions.label is not None
    _assert_close(predictions.probabilities[:, 1], expected)
    assert predictions.label.tolist() == (expected > 0.5).astype(int).tolist()


def test_native_regression_booster_predicts_exactly(build_and_load: BuildAndLoad) -> None:
    rng = np.random.default_rng(12)
    features = pd.DataFrame(rng.normal(size=(150, 2)), columns=["a", "b"])
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(features, features["a"] * 2),
        num_boost_round=5,
    )
    predictor = build_and_load(booster, features)
    assert predictor.schema.outputs.task is Task.REGRESSION
    _assert_close(predictor.predict(features).value, booster.predict(features))


def test_an_unseen_category_reaches_the_model_as_a_missing_value(
    build_and_load: BuildAndLoad, categorical_transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    model = lgb.LGBMClassifier(**PARAMS).fit(categorical_transactions, fraud_labels)
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
