"""Infer an input schema from a training sample (a DataFrame, a 2-D array or a dict of columns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.schema import (
    MAX_INFERRED_CATEGORIES,
    FieldSpec,
    FieldType,
    MissingPolicy,
)
from rtserve.errors import SchemaDefinitionError


def as_frame(sample: Any, feature_names: list[str] | None = None) -> pd.DataFrame:
    """Turn a user's sample into a DataFrame without changing its values or dtypes."""
    if isinstance(sample, pd.DataFrame):
        frame = sample
    elif isinstance(sample, np.ndarray):
        if sample.ndim != 2:
            raise SchemaDefinitionError(
                f"sample: a 2-D array of rows x features is needed, got shape {sample.shape}"
            )
        names = feature_names or [f"f{i}" for i in range(sample.shape[1])]
        if len(names) != sample.shape[1]:
            raise SchemaDefinitionError(
                f"sample: {sample.shape[1]} columns but {len(names)} feature names"
            )
        frame = pd.DataFrame(sample, columns=names)
    elif isinstance(sample, Mapping):
        frame = pd.DataFrame(dict(sample))
    else:
        raise SchemaDefinitionError(
            f"sample: expected a pandas DataFrame, a 2-D numpy array or a dict of columns, "
            f"got {type(sample).__name__}"
        )
    if len(frame) == 0:
        raise SchemaDefinitionError("sample: it has no rows; pass (a slice of) the training data")
    non_str = [c for c in frame.columns if not isinstance(c, str)]
    if non_str:
        frame = frame.rename(columns={c: str(c) for c in non_str})
    return frame


def infer_fields(frame: pd.DataFrame) -> list[FieldSpec]:
    """One field spec per column: type from the dtype, missing policy from observed nulls.

    A column that had nulls in training passes them to the model (it was trained with them); one
    that had none rejects them, since the model may never have seen a missing value there.
    Categorical columns record their observed values as ``allowed``; unseen ones still pass by
    default (``unseen`` can be tightened, and the build probes the model to tighten it itself).
    """
    return [_infer_field(str(name), frame[name]) for name in frame.columns]


def _infer_field(name: str, column: pd.Series) -> FieldSpec:
    dtype = column.dtype
    has_nulls = bool(column.isna().any())
    missing = MissingPolicy.PASS if has_nulls else MissingPolicy.REJECT
    if pd.api.types.is_bool_dtype(dtype):
        return FieldSpec(name=name, type=FieldType.BOOL, missing=missing)
    if pd.api.types.is_integer_dtype(dtype):
        return FieldSpec(name=name, type=FieldType.INT, missing=missing)
    if pd.api.types.is_float_dtype(dtype):
        return FieldSpec(name=name, type=FieldType.FLOAT, missing=missing)
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if pd.api.types.is_integer_dtype(categories.dtype):
            return FieldSpec(
                name=name, type=FieldType.INT, missing=missing, allowed=[int(v) for v in categories]
            )
        if not all(isinstance(v, str) for v in categories):
            raise SchemaDefinitionError(
                f"sample column {name!r} is a category column with {categories.dtype} categories; "
                "rtserve takes string or integer categories (e.g. .cat.rename_categories(str))",
                field=name,
            )
        return FieldSpec(
            name=name, type=FieldType.STRING, missing=missing, allowed=[str(v) for v in categories]
        )
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        values = column.dropna()
        kinds = {type(v) for v in values}
        if kinds and not all(issubclass(k, str) for k in kinds):
            if kinds <= {bool, np.bool_}:
                return FieldSpec(name=name, type=FieldType.BOOL, missing=missing)
            raise SchemaDefinitionError(
                f"sample column {name!r} mixes value types {sorted(k.__name__ for k in kinds)}; "
                "cast it to one type (e.g. .astype(str)) before building",
                field=name,
            )
        distinct = values.unique()
        allowed = (
            sorted(str(v) for v in distinct) if len(distinct) <= MAX_INFERRED_CATEGORIES else None
        )
        return FieldSpec(name=name, type=FieldType.STRING, missing=missing, allowed=allowed)
    raise SchemaDefinitionError(
        f"sample column {name!r} has dtype {dtype}, which rtserve cannot take from a client; "
        "convert it to a number, bool or string feature before building",
        field=name,
    )
