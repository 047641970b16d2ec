"""rtserve: turn a trained model into a production real-time inference service.

The public API is re-exported here and imported on first use (PEP 562), so that ``import
rtserve`` and ``rtserve --help`` stay fast: pandas, scikit-learn and the runtimes load only when a
bundle is built or loaded.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from rtserve.building.builder import build
    from rtserve.bundle.bundle import Bundle
    from rtserve.bundle.schema import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy
    from rtserve.engine.loader import load
    from rtserve.engine.predictions import Predictions
    from rtserve.engine.predictor import ParityReport, Predictor

#: Public name -> the module that defines it.
_EXPORTS = {
    "Bundle": "rtserve.bundle.bundle",
    "FieldSpec": "rtserve.bundle.schema",
    "FieldType": "rtserve.bundle.schema",
    "MissingPolicy": "rtserve.bundle.schema",
    "ParityReport": "rtserve.engine.predictor",
    "Predictions": "rtserve.engine.predictions",
    "Predictor": "rtserve.engine.predictor",
    "Schema": "rtserve.bundle.schema",
    "UnseenPolicy": "rtserve.bundle.schema",
    "build": "rtserve.building.builder",
    "load": "rtserve.engine.loader",
}

__all__ = [
    "Bundle",
    "FieldSpec",
    "FieldType",
    "MissingPolicy",
    "ParityReport",
    "Predictions",
    "Predictor",
    "Schema",
    "UnseenPolicy",
    "build",
    "load",
]


def __getattr__(name: str) -> typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtserve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
