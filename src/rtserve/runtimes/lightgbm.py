"""LightGBM models (scikit-learn wrappers and native Boosters), stored in LightGBM's text format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import RuntimeSpec
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import UnsupportedModelError
from rtserve.runtimes.base import (
    Description,
    ModelOutput,
    Runtime,
    RuntimeAdapter,
    Trust,
    module_of,
)
from rtserve.runtimes.frame import describe_frame, to_frame, to_matrix
from rtserve.runtimes.sklearn import describe_estimator
from rtserve.types import Columns, Task

MODEL_FILE = "model/model.txt"
_WRAPPERS = ("LGBMClassifier", "LGBMRegressor")


class LightGBMRuntime(Runtime):
    """Predicts with a Booster; class outputs decoded as ``LGBMClassifier`` itself does."""

    def __init__(self, booster: Any, description: Description) -> None:
        self._booster = booster
        self._layout = description.input_frame
        self._names = list(self._layout.dtypes)
        self._outputs = description.outputs
        self._mode = description.options["mode"]
        self._classes = (
            np.asarray(self._outputs.classes) if self._outputs.task is Task.CLASSIFICATION else None
        )

    def predict(self, columns: Columns) -> ModelOutput:
        """Predict every row of ``columns`` with the loaded model."""
        features = (
            to_frame(columns, self._layout)
            if self._layout.kind == "frame"
            else to_matrix(columns, self._names)
        )
        raw = np.asarray(self._booster.predict(features))
        if self._mode == "binary":
            proba = np.vstack((1.0 - raw, raw)).transpose()
            return ModelOutput(label=self._classes[np.argmax(proba, axis=1)], probabilities=proba)  # type: ignore[index]
        if self._mode == "multi":
            return ModelOutput(label=self._classes[np.argmax(raw, axis=1)], probabilities=raw)  # type: ignore[index]
        return ModelOutput(value=raw)


def _objective_mode(objective: str) -> str:
    head = objective.split()[0] if objective else "regression"
    if head in ("binary", "cross_entropy", "xentropy"):
        return "binary"
    if head in ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"):
        return "multi"
    return "value"


class LightGBMAdapter(RuntimeAdapter):
    """LGBMClassifier / LGBMRegressor and ``lightgbm.Booster``."""

    name = "lightgbm"
    packages = ("lightgbm", "numpy")

    def accepts(self, model: object) -> bool:
        """True for the model types this adapter packages (imports nothing)."""
        return module_of(model) == "lightgbm" and type(model).__name__ in (*_WRAPPERS, "Booster")

    def describe(self, model: Any, sample: Any) -> Description:
        """Task, classes and input layout, learned from the model and the sample frame."""
        frame: pd.DataFrame = sample
        if type(model).__name__ != "Booster":
            described = describe_estimator(model, frame)
            booster = model.booster_
            mode = _objective_mode(booster.dump_model(num_iteration=0)["objective"])
            if described.outputs.task is Task.REGRESSION:
                mode = "value"
            kind = (
                "frame"
                if isinstance(frame, pd.DataFrame) and hasattr(model, "feature_names_in_")
                else "matrix"
            )
            return Description(
                described.outputs, describe_frame(frame, kind), {"kind": "wrapper", "mode": mode}
            )
        info = model.dump_model(num_iteration=0)
        mode = _objective_mode(info.get("objective", ""))
        num_class = int(info.get("num_class", 1))
        if mode == "binary":
            outputs = OutputSpec(task=Task.CLASSIFICATION, classes=[0, 1])
        elif mode == "multi":
            outputs = OutputSpec(task=Task.CLASSIFICATION, classes=list(range(num_class)))
        else:
            outputs = OutputSpec(task=Task.REGRESSION)
        names = [str(n) for n in model.feature_name()]
        columns = [str(c) for c in frame.columns]
        if names != columns and not all(n.startswith("Column_") for n in names):
            raise UnsupportedModelError(
                f"the Booster was trained on features {names} but the sample has columns {columns}"
            )
        kind = "frame" if names == columns else "matrix"
        return Description(outputs, describe_frame(frame, kind), {"kind": "booster", "mode": mode})

    def save(self, model: Any, directory: Path, description: Description) -> RuntimeSpec:
        """Write the artifact in the framework's own format and say how to load it."""
        booster = model if type(model).__name__ == "Booster" else model.booster_
        target = directory / MODEL_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(target))
        return RuntimeSpec(
            adapter=self.name,
            format="lightgbm-text",
            files=[MODEL_FILE],
            options=description.options,
        )

    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        return LightGBMRuntime(booster, description)

    def wrap(self, model: Any, description: Description) -> Runtime | None:
        """A runtime around the in-memory model, to prove the saved artifact reproduces it."""
        booster = model if type(model).__name__ == "Booster" else model.booster_
        return LightGBMRuntime(booster, description)


def read_booster_file(path: Path) -> Any:
    """A native Booster from a user's LightGBM text model file (``rtserve build``)."""
    import lightgbm as lgb

    return lgb.Booster(model_file=str(path))
