"""Specification: the parity gate. What the export cannot represent, or represents differently,
falls back to the native runtime with the reason recorded; predictions never change silently."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import Optimized, read_manifest
from rtserve.engine.manager import ModelManager
from rtserve.errors import BundleError
from rtserve.runtimes.convert import MATRIX_INPUT, MISSING_STRING, exports
from rtserve.runtimes.export_gate import (
    DEFAULT_TOLERANCE,
    OFF_REASON,
    OPTIMIZED_FILE,
    compare,
    probes,
)
from rtserve.runtimes.onnx import OnnxRuntime
from rtserve.runtimes.registry import adapter_for
from rtserve.settings import Settings
from rtserve.types import ModelState

NUMERIC = ["a", "b", "c"]


def _numeric(n_rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, Any]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n_rows, 3)), columns=NUMERIC)
    return frame, (frame["a"] - frame["b"] > 0).astype(np.int64).to_numpy()


def _build_native(model: Any, sample: pd.DataFrame, target: Path, **kwargs: Any) -> Optimized:
    """Build and save; assert the native runtime serves and no export is left in the bundle."""
    rtserve.build(model, sample, name="m", version="1", **kwargs).save(target)
    manifest = read_manifest(target)
    optimized = manifest.optimized
    assert optimized is not None
    assert optimized.serving == "native"
    assert optimized.runtime is None
    assert not (target / OPTIMIZED_FILE).exists()
    assert OPTIMIZED_FILE not in manifest.files
    predictor = rtserve.load(target)
    assert not isinstance(predictor.runtime, OnnxRuntime)
    np.testing.assert_array_equal(predictor.predict(sample).label, model.predict(sample))
    return optimized


def test_an_unsupported_step_falls_back_to_native_with_the_converter_s_reason(
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _numeric()
    model = make_pipeline(FunctionTransformer(np.tanh), LogisticRegression()).fit(X, y)

    optimized = _build_native(model, X, tmp_path / "m")

    assert optimized.reason.startswith("not exported:")
    assert "FunctionTransformer" in optimized.reason
    assert optimized.parity is None


def test_native_categorical_splits_fall_back_to_native() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _numeric()
    X = X.assign(kind=(X["c"] > 0).astype(np.int64))
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=["kind"])

    # Its categorical preprocessing holds a functools.partial, which the allow-list refuses.
    with pytest.warns(UserWarning, match="stored the model as a pickle"):
        bundle = rtserve.build(model.fit(X, y), X, name="m", version="1", allow_pickle=True)

    optimized = bundle.manifest.optimized
    assert optimized is not None
    assert optimized.serving == "native"
    assert optimized.reason == (
        "not exported: HistGradientBoostingClassifier uses native categorical splits, which "
        "skl2onnx does not convert"
    )
    assert not (bundle.path / OPTIMIZED_FILE).exists()


def test_a_boolean_that_may_be_missing_falls_back_to_native(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _numeric()
    X = X.assign(flag=pd.array(np.where(X["c"] > 0, True, None), dtype="boolean"))
    model = HistGradientBoostingClassifier(max_iter=5).fit(X.astype({"flag": "float64"}), y)
    # The model was fitted on floats; the bundle takes the nullable boolean column as it is.
    sample = X.astype({"flag": "float64"}).assign(flag=X["flag"])

    rtserve.build(model, sample, name="m", version="1").save(tmp_path / "m")

    optimized = read_manifest(tmp_path / "m").optimized
    assert optimized is not None
    assert optimized.serving == "native"
    assert "boolean that may be missing" in optimized.reason


def test_a_missing_category_the_export_cannot_represent_is_caught_by_the_gate(
    tmp_path: Path,
) -> None:
    """One-hot encoding learnt a category for missing values; the export cannot express it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = _numeric(400)
    kind = np.where(X["a"] > 0.3, "high", "low").astype(object)
    kind[X["b"].to_numpy() > 0.8] = None  # missing values, strongly tied to the label
    X = X.assign(kind=pd.Series(kind, dtype="str"))
    prepare = ColumnTransformer(
        [("num", "passthrough", NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), ["kind"])]
    )
    model = Pipeline([("prepare", prepare), ("model", LogisticRegression())]).fit(X, y)

    optimized = _build_native(model, X, tmp_path / "m")

    assert optimized.reason.startswith("export rejected:")
    assert optimized.parity is not None
    assert not optimized.parity.passed
    assert optimized.parity.max_abs_diff is not None
    assert optimized.parity.max_abs_diff > DEFAULT_TOLERANCE
    assert optimized.parity.tolerance == DEFAULT_TOLERANCE
    assert optimized.parity.rows == len(X)
    assert optimized.parity.probe_rows > 0


def test_a_probe_where_only_the_export_answers_rejects_it(tmp_path: Path) -> None:
    """The schema lets 'a' be missing, the model cannot take it: the export must not answer."""
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    model = LogisticRegression().fit(X, y)

    optimized = _build_native(model, X, tmp_path / "m", schema_overrides={"a": {"missing": "pass"}})

    assert "rows with 'a' missing" in optimized.reason
    assert "the original model fails" in optimized.reason
    assert "but the export answers" in optimized.reason


def test_optimize_off_keeps_the_native_runtime_and_says_so(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    model = LogisticRegression().fit(X, y)

    optimized = _build_native(model, X, tmp_path / "m", optimize="off")

    assert optimized.reason == OFF_REASON


def test_optimize_takes_only_auto_or_off() -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    with pytest.raises(BundleError, match=r"optimize='fast' is not one of 'auto', 'off'"):
        rtserve.build(LogisticRegression().fit(X, y), X, name="m", version="1", optimize="fast")


def test_an_onnx_model_needs_no_export(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    matrix = X.to_numpy(dtype=np.float32)
    proto = to_onnx(LogisticRegression().fit(matrix, y), matrix[:1], options={"zipmap": False})

    bundle = rtserve.build(proto, X, name="m", version="1")

    assert bundle.manifest.optimized is None
    assert bundle.manifest.runtime.adapter == "onnx"


def test_compare_reports_figures_and_the_reason_when_outputs_differ(
    fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    """Two different models through the gate: every figure says they disagree."""
    fraud = adapter_for(fraud_pipeline)
    bundle = rtserve.build(fraud_pipeline, transactions, name="f", version="1", optimize="off")
    schema = bundle.manifest.model_schema
    columns = rtserve.load(bundle).validate(transactions)
    description = fraud.describe(fraud_pipeline, transactions)
    own = fraud.wrap(fraud_pipeline, description)
    (exported,) = exports(fraud_pipeline, "sklearn", description, schema)  # mixed types: one
    assert exported.options["missing_string"] == MISSING_STRING
    other = _refit_on_noise(fraud_pipeline, transactions, seed=5)
    assert own is not None
    stranger = fraud.wrap(other, fraud.describe(other, transactions))
    assert stranger is not None

    same, reason = compare(own, own, schema, columns, DEFAULT_TOLERANCE)
    differs, why = compare(own, stranger, schema, columns, DEFAULT_TOLERANCE)

    assert same.passed
    assert reason == ""
    assert same.max_abs_diff == 0.0
    assert same.rows == len(transactions)
    assert same.probe_rows == 16 * len(probes(schema, columns))
    assert not differs.passed
    assert differs.max_abs_diff is not None
    assert differs.max_abs_diff > 0.01
    assert differs.label_mismatch_rate > 0
    assert why.startswith("export rejected: max |diff| of outputs")


def _refit_on_noise(pipeline: Any, transactions: pd.DataFrame, seed: int) -> Any:
    """The same pipeline fitted on a random target: same inputs, other answers."""
    from sklearn.base import clone

    target = np.random.default_rng(seed).integers(0, 2, len(transactions))
    return clone(pipeline).fit(transactions, target)


def test_probes_put_missing_and_unseen_values_into_one_field_at_a_time(
    fraud_predictor: rtserve.Predictor, transactions: pd.DataFrame
) -> None:
    columns = fraud_predictor.validate(transactions.head(4))

    groups = {label: group for label, group, _ in probes(fraud_predictor.schema, columns)}

    assert np.isnan(groups["rows with 'amount' missing"]["amount"]).all()
    assert groups["rows with 'merchant' missing"]["merchant"].tolist() == [None] * 4
    assert groups["rows with 'merchant' missing"]["country"].tolist() == columns["country"].tolist()
    everything = groups["rows with every nullable field missing"]
    assert np.isnan(everything["amount"]).all()
    assert everything["merchant"].tolist() == [None] * 4
    assert "rows with an unseen value in 'country'" in groups


# --- serving --------------------------------------------------------------------------------


def _export_of_another_model(source: Path, stranger: Any, sample: pd.DataFrame, to: Path) -> Path:
    """A copy of the bundle at ``source`` whose ONNX export is another model's, re-sealed."""
    shutil.copytree(source, to)
    other = to.parent / "stranger"
    rtserve.build(stranger, sample, name="m", version="1").save(other)
    shutil.copyfile(other / OPTIMIZED_FILE, to / OPTIMIZED_FILE)
    Bundle.seal(to, read_manifest(to))
    return to


def test_the_server_serves_natively_when_this_onnx_runtime_disagrees_at_warm_up(
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    rtserve.build(model, X, name="m", version="1").save(tmp_path / "good")
    stranger = LogisticRegression().fit(X, 1 - y)
    swapped = _export_of_another_model(tmp_path / "good", stranger, X, tmp_path / "swapped")

    served = ModelManager(Settings.load()).load(swapped)

    assert served.state is ModelState.READY
    assert served.platform == "sklearn"
    assert "ONNX export" in served.serving_reason
    assert "does NOT match" in served.serving_reason
    assert served.predictor is not None
    np.testing.assert_array_equal(served.predictor.predict(X).label, model.predict(X))


def test_the_server_serves_the_export_unless_told_to_serve_natively(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _numeric()
    rtserve.build(LogisticRegression().fit(X, y), X, name="m", version="1").save(tmp_path / "m")

    onnx = ModelManager(Settings.load()).load(tmp_path / "m")
    native = ModelManager(Settings.load(loading__force_native_runtime=True)).load(tmp_path / "m")

    assert (onnx.platform, onnx.serving_reason) == ("onnx", "ONNX export passed its parity gate")
    assert isinstance(onnx.predictor.runtime if onnx.predictor else None, OnnxRuntime)
    assert (native.platform, native.serving_reason) == ("sklearn", "native runtime forced at load")


def _served_export(target: Path) -> tuple[Optimized, list[str]]:
    """The saved bundle's export record and the ONNX model's input names (ONNX must serve)."""
    import onnx

    optimized = read_manifest(target).optimized
    assert optimized is not None
    assert optimized.serving == "onnx", optimized
    inputs = [i.name for i in onnx.load(str(target / OPTIMIZED_FILE)).graph.input]
    return optimized, inputs


def test_an_all_numeric_pipeline_trained_on_a_frame_takes_one_matrix_input(
    tmp_path: Path,
) -> None:
    """One input for all fields: ONNX Runtime's cost per call grows with its inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _numeric()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    rtserve.build(model, X, name="m", version="1").save(tmp_path / "m")

    optimized, inputs = _served_export(tmp_path / "m")
    assert inputs == [MATRIX_INPUT]
    assert optimized.input_frame is not None
    assert optimized.input_frame.kind == "matrix"
    predictor = rtserve.load(tmp_path / "m")
    assert isinstance(predictor.runtime, OnnxRuntime)
    shuffled = X[list(reversed(NUMERIC))]  # records name their fields: order is not position
    np.testing.assert_allclose(
        predictor.predict(shuffled).probabilities, model.predict_proba(X), atol=1e-9
    )


def test_a_pipeline_picking_columns_by_name_takes_the_export_that_answers_like_it(
    tmp_path: Path,
) -> None:
    """Columns picked by name, in another order than the frame's: whichever export serves (a
    matrix when the converter maps the names, else one input per field) answers as the model
    does on every row; an export that converts but disagrees never serves."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _numeric()
    picks = ColumnTransformer([("scaled", StandardScaler(), ["c", "a"])], remainder="drop")
    model = make_pipeline(picks, LogisticRegression()).fit(X, y)
    rtserve.build(model, X, name="m", version="1").save(tmp_path / "m")

    optimized, inputs = _served_export(tmp_path / "m")
    assert inputs in ([MATRIX_INPUT], NUMERIC)
    assert optimized.parity is not None
    assert optimized.parity.passed
    np.testing.assert_allclose(
        rtserve.load(tmp_path / "m").predict(X).probabilities,
        model.predict_proba(X),
        atol=DEFAULT_TOLERANCE,
    )


def test_when_the_matrix_export_disagrees_the_per_field_export_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate tries the exports in turn: a matrix export that fails parity (here: made to
    feed the fields in reverse order) is dropped and the per-field export serves."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rtserve.runtimes import convert

    original = convert._export_sklearn

    def matrix_in_reverse(model: Any, description: Any, inputs: Any, frame: Any) -> Any:
        exported = original(model, description, inputs, frame)
        if frame.kind != "matrix":
            return exported
        reverse = frame.model_copy(update={"dtypes": dict(reversed(frame.dtypes.items()))})
        return convert.Export(exported.proto, reverse, exported.options, exported.packages)

    monkeypatch.setattr(convert, "_export_sklearn", matrix_in_reverse)
    X, y = _numeric()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    rtserve.build(model, X, name="m", version="1").save(tmp_path / "m")

    optimized, inputs = _served_export(tmp_path / "m")
    assert inputs == NUMERIC
    assert optimized.input_frame is not None
    assert optimized.input_frame.kind == "frame"
    np.testing.assert_allclose(
        rtserve.load(tmp_path / "m").predict(X).probabilities,
        model.predict_proba(X),
        atol=DEFAULT_TOLERANCE,
    )
