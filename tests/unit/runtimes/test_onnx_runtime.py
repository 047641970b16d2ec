"""Specification: an existing ONNX model given with a sample predicts through a bundle unchanged,
and no external-data path can reach outside the bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

import rtserve
from rtserve import Bundle, Predictor
from rtserve.bundle.manifest import read_manifest
from rtserve.errors import UnsafeArtifactError
from rtserve.runtimes.onnx import ONNX_FILE
from rtserve.types import Task

BuildAndLoad = Callable[..., Predictor]
TOLERANCE = 1e-9
WEIGHTS = np.array([[0.5], [-1.25], [2.0]], dtype=np.float32)
BIAS = np.array([0.25], dtype=np.float32)


def _linear_graph(weights: onnx.TensorProto | None = None) -> onnx.ModelProto:
    """y = x @ W + b, built by hand: one [N, 3] float input, one [N, 1] output."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[
            weights if weights is not None else numpy_helper.from_array(WEIGHTS, "W"),
            numpy_helper.from_array(BIAS, "b"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external_weights(location: str) -> onnx.TensorProto:
    """The weight initializer, stored as external data at ``location``."""
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 1])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _run(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def linear_sample() -> np.ndarray[Any, Any]:
    return np.random.default_rng(21).normal(size=(50, 3))


@pytest.fixture(scope="module")
def onnx_fraud(transactions: pd.DataFrame, fraud_labels: Any) -> tuple[Any, onnx.ModelProto]:
    """A scikit-learn pipeline over numeric and string columns, converted with skl2onnx."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = transactions[["amount", "hour", "country"]]
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        (
                            "num",
                            make_pipeline(SimpleImputer(), StandardScaler()),
                            ["amount", "hour"],
                        ),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, fraud_labels)
    proto = to_onnx(
        pipeline,
        initial_types=[
            ("amount", FloatTensorType([None, 1])),
            ("hour", Int64TensorType([None, 1])),
            ("country", StringTensorType([None, 1])),
        ],
        target_opset=17,
    )
    return pipeline, proto


def _feeds(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "amount": frame[["amount"]].to_numpy(np.float32),
        "hour": frame[["hour"]].to_numpy(np.int64),
        "country": frame[["country"]].to_numpy(object),
    }


def test_a_converted_sklearn_pipeline_predicts_exactly_as_onnx_runtime_does(
    build_and_load: BuildAndLoad,
    onnx_fraud: tuple[Any, onnx.ModelProto],
    transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
) -> None:
    pipeline, proto = onnx_fraud
    columns = ["amount", "hour", "country"]
    predictor = build_and_load(proto, transactions[columns])
    assert predictor.bundle.manifest.runtime.format == "onnx"
    assert predictor.schema.outputs.classes == [0, 1]
    new = holdout_transactions[columns]
    labels, zipmap = _run(proto, _feeds(new))
    expected = np.array([[row[0], row[1]] for row in zipmap], dtype=np.float32)
    predictions = predictor.predict(new.to_dict("records"))
    assert predictions.label is not None
    assert predictions.label.tolist() == labels.tolist()
    np.testing.assert_allclose(predictions.probabilities, expected, rtol=0, atol=TOLERANCE)
    # and the converted model still agrees with scikit-learn to float32 precision
    np.testing.assert_allclose(predictions.probabilities, pipeline.predict_proba(new), atol=1e-5)


def test_a_hand_built_graph_on_a_matrix_predicts_exactly_as_onnx_runtime_does(
    build_and_load: BuildAndLoad, linear_sample: np.ndarray[Any, Any]
) -> None:
    proto = _linear_graph()
    predictor = build_and_load(proto, linear_sample)
    assert predictor.schema.outputs.task is Task.REGRESSION
    assert predictor.schema.field_names == ["f0", "f1", "f2"]
    (expected,) = _run(proto, {"x": linear_sample.astype(np.float32)})
    records = [{f"f{j}": float(v) for j, v in enumerate(row)} for row in linear_sample]
    np.testing.assert_allclose(
        predictor.predict(records).value, expected[:, 0], rtol=0, atol=TOLERANCE
    )


def test_an_onnx_file_path_with_external_data_beside_it_builds(
    build_and_load: BuildAndLoad, tmp_path: Path, linear_sample: np.ndarray[Any, Any]
) -> None:
    source = tmp_path / "src" / "linear.onnx"
    source.parent.mkdir()
    onnx.save_model(
        _linear_graph(),
        str(source),
        save_as_external_data=True,
        location="linear.weights",
        size_threshold=0,
    )
    assert (source.parent / "linear.weights").is_file()
    predictor = build_and_load(source, linear_sample)
    (expected,) = _run(_linear_graph(), {"x": linear_sample.astype(np.float32)})
    np.testing.assert_allclose(
        predictor.predict({f"f{j}": linear_sample[:, j] for j in range(3)}).value,
        expected[:, 0],
        rtol=0,
        atol=TOLERANCE,
    )


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_model_folder_is_refused_at_build(
    tmp_path: Path, linear_sample: np.ndarray[Any, Any], location: str
) -> None:
    (tmp_path / "outside.bin").write_bytes(WEIGHTS.tobytes())
    proto = _linear_graph(_external_weights(location))
    with pytest.raises(UnsafeArtifactError, match="outside the bundle") as caught:
        rtserve.build(proto, linear_sample, name="linear", version="1")
    assert repr(location) in caught.value.message
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    onnx.save_model(proto, str(model_dir / "linear.onnx"))
    with pytest.raises(UnsafeArtifactError, match="outside the bundle"):
        rtserve.build(model_dir / "linear.onnx", linear_sample, name="linear", version="1")


def test_external_data_outside_the_bundle_is_refused_at_load_even_with_correct_hashes(
    tmp_path: Path, linear_sample: np.ndarray[Any, Any]
) -> None:
    bundle_dir = tmp_path / "bundles" / "linear-1"
    rtserve.build(_linear_graph(), linear_sample, name="linear", version="1").save(bundle_dir)
    # An attacker points the weights at a file beside the bundle and re-seals every hash.
    (tmp_path / "bundles" / "secret.bin").write_bytes(WEIGHTS.tobytes())
    onnx.save_model(
        _linear_graph(_external_weights("../../secret.bin")), str(bundle_dir / ONNX_FILE)
    )
    Bundle.seal(bundle_dir, read_manifest(bundle_dir))
    Bundle.open(bundle_dir)  # the hashes are consistent again
    with pytest.raises(
        UnsafeArtifactError, match=r"'../../secret.bin', which is outside the bundle"
    ):
        rtserve.load(bundle_dir)
