"""What every peer service shares: the models saved with joblib and one honest DataFrame builder.

Each peer turns request rows into a pandas DataFrame with the training dtypes (numbers as
float64 with NaN for missing, categories as objects with NaN for missing) and calls the fitted
pipeline's own ``predict_proba``: the same work in every framework, so the comparison measures
the frameworks. Paths come from BENCH_MODELS_DIR (written by bench/models.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

MODELS_DIR = Path(
    os.environ.get("BENCH_MODELS_DIR", Path(__file__).resolve().parents[1] / ".work" / "models")
)
FIELDS: dict[str, dict[str, list[str]]] = json.loads((MODELS_DIR / "fields.json").read_text())
NAMES = sorted(FIELDS)
VARIANT = os.environ.get("BENCH_VARIANT", "default")  # "default" or "tuned"
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))  # tuned: one per server CPU


def load(name: str) -> Any:
    """The fitted pipeline saved for ``name``."""
    return joblib.load(MODELS_DIR / f"{name}.joblib")


def frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (missing keys or nulls for missing values) as the DataFrame the model was fitted on."""
    spec = FIELDS[name]
    df = pd.DataFrame(rows, columns=spec["numeric"] + spec["categorical"])
    for col in spec["numeric"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in spec["categorical"]:
        df[col] = df[col].astype(object).where(df[col].notna(), np.nan)
    return df


def answers(model: Any, df: pd.DataFrame) -> list[dict[str, Any]]:
    """``{"label", "probability"}`` (of class 1) per row."""
    proba = model.predict_proba(df)
    classes = model.classes_
    return [{"label": int(classes[int(np.argmax(p))]), "probability": float(p[1])} for p in proba]
