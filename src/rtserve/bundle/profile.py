"""Reference statistics of the training sample and the model's outputs, kept for drift checks."""

from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from rtserve.bundle.schema import FieldType, Schema
from rtserve.types import AnyArray, Columns, Task

#: Quantile bins per numeric feature (deciles).
N_BINS = 10
#: Categorical frequencies kept per feature; the rest is summed into ``other``.
TOP_CATEGORIES = 100


class NumericProfile(BaseModel):
    """Quantile bin edges and the sample's counts per bin (``len(edges) + 1`` bins)."""

    kind: Literal["numeric"] = "numeric"
    count: int
    null_rate: float
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    edges: list[float]
    counts: list[int]


class CategoricalProfile(BaseModel):
    """Relative frequency of each value (top ``TOP_CATEGORIES``), the rest in ``other``."""

    kind: Literal["categorical"] = "categorical"
    count: int
    null_rate: float
    frequencies: dict[str, float]
    other: float = 0.0


FeatureProfile = NumericProfile | CategoricalProfile


class OutputProfile(BaseModel):
    """Distribution of the model's outputs on the sample."""

    task: Task
    class_frequencies: dict[str, float] = Field(default_factory=dict)
    confidence: NumericProfile | None = None
    value: NumericProfile | None = None


class Profile(BaseModel):
    """Per-feature reference statistics plus the output distribution."""

    rows: int
    features: dict[str, NumericProfile | CategoricalProfile]
    outputs: OutputProfile


def numeric_profile(values: AnyArray) -> NumericProfile:
    """Quantile-bin a numeric column; nulls (NaN) counted in ``null_rate`` only."""
    arr = np.asarray(values, dtype=np.float64)
    count = int(arr.size)
    present = arr[~np.isnan(arr)]
    null_rate = float(1 - present.size / count) if count else 0.0
    if present.size == 0:
        return NumericProfile(
            count=count,
            null_rate=null_rate,
            min=None,
            max=None,
            mean=None,
            std=None,
            edges=[],
            counts=[],
        )
    quantiles = np.quantile(present, np.linspace(0, 1, N_BINS + 1)[1:-1])
    edges = np.unique(quantiles)
    bins = np.searchsorted(edges, present, side="right")
    counts = np.bincount(bins, minlength=edges.size + 1)
    return NumericProfile(
        count=count,
        null_rate=null_rate,
        min=float(present.min()),
        max=float(present.max()),
        mean=float(present.mean()),
        std=float(present.std()),
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
    )


def categorical_profile(values: AnyArray) -> CategoricalProfile:
    """Relative frequencies of the values of a categorical column."""
    count = len(values)
    present = [str(v) for v in values if v is not None]
    null_rate = float(1 - len(present) / count) if count else 0.0
    counter = Counter(present)
    total = max(len(present), 1)
    top = counter.most_common(TOP_CATEGORIES)
    kept = sum(n for _, n in top)
    return CategoricalProfile(
        count=count,
        null_rate=null_rate,
        frequencies={k: n / total for k, n in top},
        other=(len(present) - kept) / total,
    )


def build_profile(
    schema: Schema,
    columns: Columns,
    label: AnyArray | None,
    probabilities: AnyArray | None,
    value: AnyArray | None,
) -> Profile:
    """Profile validated training columns and the model's outputs on them."""
    features: dict[str, NumericProfile | CategoricalProfile] = {}
    for spec in schema.inputs:
        column = columns[spec.name]
        if spec.type in (FieldType.FLOAT, FieldType.INT):
            features[spec.name] = numeric_profile(column)
        elif spec.type is FieldType.BOOL:
            features[spec.name] = categorical_profile(
                np.array(
                    [None if v is None else str(bool(v)).lower() for v in column], dtype=object
                )
            )
        else:
            features[spec.name] = categorical_profile(column)
        if spec.pii and isinstance(features[spec.name], CategoricalProfile):
            # the values of a PII field are personal data: keep only how often it is missing
            profile = features[spec.name]
            features[spec.name] = profile.model_copy(
                update={"frequencies": {}, "other": 1.0 if profile.null_rate < 1 else 0.0}
            )
    rows = len(next(iter(columns.values())))
    outputs = OutputProfile(task=schema.outputs.task)
    if label is not None:
        cat = categorical_profile(np.asarray([str(v) for v in label], dtype=object))
        outputs.class_frequencies = cat.frequencies
    if probabilities is not None and probabilities.ndim == 2:
        outputs.confidence = numeric_profile(probabilities.max(axis=1))
    if value is not None:
        outputs.value = numeric_profile(np.asarray(value, dtype=np.float64).reshape(rows, -1)[:, 0])
    return Profile(rows=rows, features=features, outputs=outputs)
