"""rtserve: turn a trained model into a production real-time inference service."""

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.schema import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy
from rtserve.engine.builder import build
from rtserve.engine.loader import load
from rtserve.engine.predictions import Predictions
from rtserve.engine.predictor import ParityReport, Predictor

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
