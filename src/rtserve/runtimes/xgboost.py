"""XGBoost models (scikit-learn wrappers and native Boosters), stored in XGBoost's UBJSON format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import RuntimeSpec
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import BundleFormatError, UnsupportedModelError, UntrustedCodeError
from rtserve.runtimes.base import (
    Description,
    ModelOutput,
    Runtime,
    RuntimeAdapter,
    Trust,
    module_of,
)
from rtserve.runtimes.frame import describe_frame, to_frame, to_matrix
from rtserve.runtimes.sklearn import describe_estimator, predict_estimator
from rtserve.runtimes.trusted_types import XGBOOST_WRAPPERS
from rtserve.types import Columns, Task

MODEL_FILE = "model/model.ubj"


def booster_output(objective: str, num_class: int) -> tuple[OutputSpec, str]:
    """Output spec and decoding mode for a native Booster's objective."""
    if objective.startswith("binary:logistic") or objective == "binary:logitraw":
        mode = "binary" if objective == "binary:logistic" else "value"
        if mode == "binary":
            return OutputSpec(task=Task.CLASSIFICATION, classes=[0, 1]), mode
    if objective == "multi:softprob":
        return OutputSpec(task=Task.CLASSIFICATION, classes=list(range(num_class))), "multi"
    if objective == "multi:softmax":
        spec = OutputSpec(
            task=Task.CLASSIFICATION, classes=list(range(num_class)), probabilities=False
        )
        return spec, "label"
    return OutputSpec(task=Task.REGRESSION), "value"


def decode_booster(raw: Any, mode: str, classes: Any) -> ModelOutput:
    """Turn a Booster's raw predict array into label/probabilities or value."""
    raw = np.asarray(raw)
    if mode == "binary":
        proba = np.column_stack([1.0 - raw, raw])
        return ModelOutput(label=classes[np.argmax(proba, axis=1)], probabilities=proba)
    if mode == "multi":
        return ModelOutput(label=classes[np.argmax(raw, axis=1)], probabilities=raw)
    if mode == "label":
        return ModelOutput(label=classes[raw.astype(np.int64)])
    return ModelOutput(value=raw)


class XGBoostRuntime(Runtime):
    """Predicts with a loaded wrapper (its own predict_proba) or a Booster (decoded)."""

    def __init__(self, model: Any, description: Description) -> None:
        self._model = model
        self._layout = description.input_frame
        self._names = list(self._layout.dtypes)
        self._outputs = description.outputs
        self._options = description.options
        self._classes = (
            np.asarray(self._outputs.classes) if self._outputs.task is Task.CLASSIFICATION else None
        )

    def _features(self, columns: Columns) -> Any:
        if self._layout.kind == "frame":
            return to_frame(columns, self._layout)
        return to_matrix(columns, self._names)

    def predict(self, columns: Columns) -> ModelOutput:
        """Predict every row of ``columns`` with the loaded model."""
        features = self._features(columns)
        if self._options["kind"] == "wrapper":
            return predict_estimator(
                self._model,
                features,
                self._outputs,
                self._classes,
                bool(self._options.get("label_from_proba")),
            )
        import xgboost as xgb

        matrix = xgb.DMatrix(features, enable_categorical=True)
        return decode_booster(self._model.predict(matrix), self._options["mode"], self._classes)


class XGBoostAdapter(RuntimeAdapter):
    """XGBClassifier / XGBRegressor (and RF variants) and ``xgboost.Booster``."""

    name = "xgboost"
    packages = ("xgboost", "numpy")

    def accepts(self, model: object) -> bool:
        """True for the model types this adapter packages (imports nothing)."""
        name = type(model).__name__
        return module_of(model) == "xgboost" and (name in XGBOOST_WRAPPERS or name == "Booster")

    def describe(self, model: Any, sample: Any) -> Description:
        """Task, classes and input layout, learned from the model and the sample frame."""
        frame: pd.DataFrame = sample
        booster = model if type(model).__name__ == "Booster" else model.get_booster()
        _require_category_dtypes(booster, frame)
        if type(model).__name__ != "Booster":
            described = describe_estimator(model, frame)
            options = {**described.options, "kind": "wrapper", "class": type(model).__name__}
            return Description(described.outputs, described.input_frame, options)
        config = json.loads(model.save_config())
        learner = config["learner"]
        objective = learner["objective"]["name"]
        num_class = int(learner["learner_model_param"].get("num_class", "0"))
        outputs, mode = booster_output(objective, num_class)
        names = model.feature_names
        if names is not None and list(names) != [str(c) for c in frame.columns]:
            raise UnsupportedModelError(
                f"the Booster was trained on features {list(names)} but the sample has columns "
                f"{[str(c) for c in frame.columns]}; pass a sample with the training columns"
            )
        kind = "frame" if names is not None else "matrix"
        options = {"kind": "booster", "mode": mode, "objective": objective}
        return Description(outputs, describe_frame(frame, kind), options)

    def save(self, model: Any, directory: Path, description: Description) -> RuntimeSpec:
        """Write the artifact in the framework's own format and say how to load it."""
        target = directory / MODEL_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save_model(str(target))
        return RuntimeSpec(
            adapter=self.name, format="xgboost-ubj", files=[MODEL_FILE], options=description.options
        )

    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""
        import xgboost as xgb

        path = str(directory / MODEL_FILE)
        kind = spec.options.get("kind")
        if kind == "wrapper":
            model = wrapper_class(xgb, spec.options.get("class"))()
            model.load_model(path)
        elif kind == "booster":
            model = xgb.Booster(model_file=path)
        else:
            raise BundleFormatError(
                f"rtserve.yaml: runtime.options.kind is {kind!r}; an XGBoost bundle holds a "
                "'wrapper' or a 'booster'",
                field="runtime.options.kind",
            )
        return XGBoostRuntime(model, description)

    def wrap(self, model: Any, description: Description) -> Runtime | None:
        """A runtime around the in-memory model, to prove the saved artifact reproduces it."""
        return XGBoostRuntime(model, description)


def wrapper_class(xgb: Any, name: object) -> Any:
    """The XGBoost wrapper class a manifest names, if it is one of ``XGBOOST_WRAPPERS``.

    The name comes from ``rtserve.yaml``, which an editor of the bundle controls: looking up any
    other attribute of the ``xgboost`` module and calling it would run whatever it names.
    """
    if not isinstance(name, str) or name not in XGBOOST_WRAPPERS:
        raise UntrustedCodeError(
            f"rtserve.yaml: runtime.options.class is {name!r}, which is not an XGBoost wrapper "
            f"rtserve constructs (one of {sorted(XGBOOST_WRAPPERS)}, see "
            "rtserve.runtimes.trusted_types); refusing to load. The bundle was edited after its "
            "build: rebuild it from the model",
            names=[str(name)],
            field="runtime.options.class",
        )
    return getattr(xgb, name)


def read_booster_file(path: Path) -> Any:
    """A native Booster from a user's XGBoost JSON or UBJSON model file (``rtserve build``)."""
    import xgboost as xgb

    return xgb.Booster(model_file=str(path))


def _require_category_dtypes(booster: Any, frame: pd.DataFrame) -> None:
    """Refuse a sample whose columns lost the category dtype the model was trained with.

    XGBoost's categorical splits need pandas ``category`` columns; a CSV file cannot carry that
    dtype, so the same data read from CSV arrives as text and the model refuses it deep inside.
    """
    names = booster.feature_names
    types = booster.feature_types
    if names is None or types is None:
        return
    lost = [
        name
        for name, kind in zip(names, types, strict=False)
        if kind == "c"
        and name in frame.columns
        and not isinstance(frame[name].dtype, pd.CategoricalDtype)
    ]
    if lost:
        raise UnsupportedModelError(
            f"the model treats column(s) {', '.join(lost)} as categorical, but in the sample "
            f"they have dtype {', '.join(sorted({str(frame[n].dtype) for n in lost}))}, not "
            "pandas 'category' (a CSV file cannot carry that dtype); pass the sample as parquet, "
            "or build from Python with a DataFrame whose columns have the training dtypes"
        )
