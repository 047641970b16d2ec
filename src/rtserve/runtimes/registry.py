"""Which adapter handles which model: asked in order, most specific first."""

from __future__ import annotations

from rtserve.errors import BundleFormatError, UnsupportedModelError
from rtserve.runtimes.base import RuntimeAdapter
from rtserve.runtimes.lightgbm import LightGBMAdapter
from rtserve.runtimes.onnx import OnnxAdapter
from rtserve.runtimes.sklearn import SklearnAdapter
from rtserve.runtimes.xgboost import XGBoostAdapter

# Booster wrappers are also scikit-learn estimators, so they are asked before scikit-learn.
ADAPTERS: tuple[RuntimeAdapter, ...] = (
    XGBoostAdapter(),
    LightGBMAdapter(),
    OnnxAdapter(),
    SklearnAdapter(),
)


def adapter_for(model: object) -> RuntimeAdapter:
    """The adapter that packages ``model``."""
    for adapter in ADAPTERS:
        if adapter.accepts(model):
            return adapter
    raise UnsupportedModelError(
        f"rtserve cannot package a {type(model).__module__}.{type(model).__qualname__}: supported "
        "are scikit-learn estimators and pipelines, XGBoost and LightGBM models (wrappers and "
        "boosters) and ONNX models"
    )


def adapter_named(name: str) -> RuntimeAdapter:
    """The adapter a manifest names."""
    for adapter in ADAPTERS:
        if adapter.name == name:
            return adapter
    raise BundleFormatError(
        f"rtserve.yaml names runtime adapter {name!r}; known are {[a.name for a in ADAPTERS]}",
        field="runtime.adapter",
    )
