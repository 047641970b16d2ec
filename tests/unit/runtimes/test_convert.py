"""Specification: a bundle exports its model to ONNX, and ``Predictor.predict`` through the export
answers the labels and probabilities (or values) of the in-memory model within the tolerance, for
every kind of model the export supports, on new rows, rows with missing values and unseen values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.engine.loader import serving
from rtserve.runtimes.export_gate import DEFAULT_TOLERANCE, OPTIMIZED_FILE
from rtserve.runtimes.onnx import OnnxRuntime

Case = tuple[Any, pd.DataFrame, pd.DataFrame]  # fitted model, training sample, new rows
DENSE_FEATURES = 32


def _dense(n_rows: int, seed: int, missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(size=(n_rows, DENSE_FEATURES)), columns=[f"x{i}" for i in range(DENSE_FEATURES)]
    )
    if missing:
        frame = frame.mask(rng.random(frame.shape) < missing)
    return frame


def _labels(frame: pd.DataFrame) -> Any:
    return (frame.iloc[:, :4].fillna(0).sum(axis=1) > 0).astype(np.int64).to_numpy()


def _values(frame: pd.DataFrame) -> Any:
    return frame.iloc[:, :4].fillna(0).to_numpy() @ np.array([3.0, -2.0, 1.5, 0.5])


def card_fraud() -> Case:
    X, y = card_transactions(1500, seed=3)
    new, _ = card_transactions(400, seed=11)
    return fraud_pipeline().set_params(model__max_iter=30).fit(X, y), X, new


def dense_logistic_regression() -> Case:
    from sklearn.linear_model import LogisticRegression

    X = _dense(600, 1)
    return LogisticRegression(max_iter=500).fit(X, _labels(X)), X, _dense(200, 2)


def gradient_boosting() -> Case:
    from sklearn.ensemble import GradientBoostingClassifier

    X = _dense(600, 1)
    model = GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=0)
    return model.fit(X, _labels(X)), X, _dense(200, 2)


def random_forest_with_string_classes() -> Case:
    from sklearn.ensemble import RandomForestClassifier

    X = _dense(600, 1)
    classes = np.array(["low", "medium", "high"], dtype=object)[
        np.digitize(X["x0"].to_numpy(), [-0.5, 0.5])
    ]
    model = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0)
    return model.fit(X, classes), X, _dense(200, 2)


def hist_gradient_boosting_with_missing() -> Case:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = _dense(800, 1, missing=0.1)
    model = HistGradientBoostingClassifier(max_iter=25, random_state=0)
    return model.fit(X, _labels(X)), X, _dense(200, 2, missing=0.1)


def hist_gradient_boosting_regressor() -> Case:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = _dense(800, 1, missing=0.05)
    model = HistGradientBoostingRegressor(max_iter=25, random_state=0)
    return model.fit(X, _values(X)), X, _dense(200, 2, missing=0.05)


def scaled_ridge_regressor() -> Case:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = _dense(600, 1)
    return make_pipeline(StandardScaler(), Ridge()).fit(X, _values(X)), X, _dense(200, 2)


def xgboost_classifier() -> Case:
    import xgboost as xgb

    X = _dense(600, 1, missing=0.05)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1)
    return model.fit(X, _labels(X)), X, _dense(200, 2, missing=0.05)


def lightgbm_classifier() -> Case:
    import lightgbm as lgb

    X = _dense(600, 1, missing=0.05)
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, n_jobs=1)
    return model.fit(X, _labels(X)), X, _dense(200, 2, missing=0.05)


def lightgbm_regressor() -> Case:
    import lightgbm as lgb

    X = _dense(600, 1)
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=8, verbose=-1, n_jobs=1)
    return model.fit(X, _values(X)), X, _dense(200, 2)


CASES: dict[str, Callable[[], Case]] = {
    "card-fraud pipeline": card_fraud,
    "dense logistic regression": dense_logistic_regression,
    "gradient boosting": gradient_boosting,
    "random forest, string classes": random_forest_with_string_classes,
    "hist gradient boosting, missing values": hist_gradient_boosting_with_missing,
    "hist gradient boosting regressor": hist_gradient_boosting_regressor,
    "scaler + ridge regressor": scaled_ridge_regressor,
    "xgboost": xgboost_classifier,
    "lightgbm": lightgbm_classifier,
    "lightgbm regressor": lightgbm_regressor,
}


def _assert_answers_like(predictor: rtserve.Predictor, model: Any, rows: pd.DataFrame) -> None:
    predictions = predictor.predict(rows)
    if hasattr(model, "predict_proba"):
        assert predictions.label is not None
        assert predictions.probabilities is not None
        assert predictions.label.tolist() == model.predict(rows).tolist()
        np.testing.assert_allclose(
            predictions.probabilities, model.predict_proba(rows), rtol=0, atol=DEFAULT_TOLERANCE
        )
    else:
        np.testing.assert_allclose(
            predictions.value, model.predict(rows), rtol=0, atol=DEFAULT_TOLERANCE
        )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_export_serves_and_answers_like_the_in_memory_model(
    case: Callable[[], Case], tmp_path: Path
) -> None:
    model, sample, new_rows = case()
    rtserve.build(model, sample, name="m", version="1").save(tmp_path / "m")

    predictor = rtserve.load(tmp_path / "m")

    optimized = predictor.bundle.manifest.optimized
    assert optimized is not None, optimized
    assert optimized.serving == "onnx", optimized
    assert optimized.parity is not None
    assert optimized.parity.passed
    assert optimized.parity.max_abs_diff is not None
    assert optimized.parity.max_abs_diff <= DEFAULT_TOLERANCE
    assert optimized.parity.label_mismatch_rate == 0.0
    assert optimized.parity.rows >= 200
    assert isinstance(predictor.runtime, OnnxRuntime)
    assert (tmp_path / "m" / OPTIMIZED_FILE).is_file()
    assert (tmp_path / "m" / predictor.bundle.manifest.runtime.files[0]).is_file()  # native kept
    _assert_answers_like(predictor, model, new_rows)


def test_the_card_fraud_export_treats_missing_and_unseen_strings_like_the_pipeline(
    tmp_path: Path,
) -> None:
    model, sample, new_rows = card_fraud()
    rtserve.build(model, sample, name="fraud", version="1").save(tmp_path / "fraud")
    predictor = rtserve.load(tmp_path / "fraud")
    assert isinstance(predictor.runtime, OnnxRuntime)
    rows = new_rows.head(8).copy()
    # A missing string, spelled as in the training frame (scikit-learn itself would not impute a
    # None there, but rtserve's validator reads both as missing): imputed as the most frequent.
    rows["channel"] = np.nan
    rows["account_age_days"] = np.nan  # a missing number: imputed with the median
    rows.loc[rows.index[:4], "country"] = "XX"  # unseen: one-hot encodes it as all zeros
    rows.loc[rows.index[4:], "merchant_category"] = "None"  # the text "None" is not missing

    _assert_answers_like(predictor, model, rows)
    records = [{k: v for k, v in r.items() if k != "channel"} for r in rows.to_dict("records")]
    np.testing.assert_allclose(
        predictor.predict(records).probabilities,
        model.predict_proba(rows),
        rtol=0,
        atol=DEFAULT_TOLERANCE,
    )


def test_the_validation_sample_holds_rows_with_missing_values(tmp_path: Path) -> None:
    model, sample, _ = card_fraud()
    bundle = rtserve.build(model, sample, name="fraud", version="1", validation_rows=20)
    inputs = bundle.read_validation().inputs
    assert bundle.read_validation().rows == 20
    for name in ("account_age_days", "distance_km", "channel"):
        assert None in inputs[name], name


def test_the_native_runtime_can_be_forced_at_load(tmp_path: Path) -> None:
    model, sample, new_rows = dense_logistic_regression()
    rtserve.build(model, sample, name="m", version="1").save(tmp_path / "m")

    predictor = rtserve.load(tmp_path / "m", force_native=True)

    assert not isinstance(predictor.runtime, OnnxRuntime)
    assert serving(predictor.bundle.manifest, force_native=True).reason == (
        "native runtime forced at load"
    )
    np.testing.assert_array_equal(
        predictor.predict(new_rows).probabilities, model.predict_proba(new_rows)
    )
