"""Lay validated columns out as the table or matrix a framework was trained on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import InputFrame
from rtserve.types import AnyArray, Columns, MatrixColumns


def describe_frame(sample: pd.DataFrame, kind: str) -> InputFrame:
    """Record the sample's dtypes (and categories, null markers) to rebuild the same layout."""
    dtypes = {str(c): str(sample[c].dtype) for c in sample.columns}
    categories = {
        str(c): list(sample[c].cat.categories.tolist())
        for c in sample.columns
        if isinstance(sample[c].dtype, pd.CategoricalDtype)
    }
    none_nulls = [
        str(c)
        for c in sample.columns
        if sample[c].dtype == object and any(v is None for v in sample[c].tolist())
    ]
    return InputFrame(kind=kind, dtypes=dtypes, categories=categories, none_nulls=none_nulls)  # type: ignore[arg-type]


def to_frame(columns: Columns, layout: InputFrame) -> pd.DataFrame:
    """A DataFrame with the training dtypes, built straight from the arrays (no copies if possible)."""
    data: dict[str, Any] = {}
    for name, dtype in layout.dtypes.items():
        data[name] = _series(name, columns[name], dtype, layout)
    return pd.DataFrame(data, copy=False)


def _series(name: str, values: AnyArray, dtype: str, layout: InputFrame) -> Any:
    if name in layout.categories:
        # Values outside the training categories (allowed through by `unseen: pass`) become
        # missing, as the model saw them in training; from_codes says so explicitly, where
        # pd.Categorical(values, categories=...) warns that it will raise in a future pandas.
        categories = pd.Index(layout.categories[name])
        return pd.Categorical.from_codes(categories.get_indexer(values), categories=categories)
    if dtype == "object":
        if values.dtype != object:
            return values.astype(object)
        if name in layout.none_nulls:
            return values
        out = values.copy()
        out[pd.isna(out)] = np.nan
        return out
    if values.dtype == object:
        # strings (pandas "str"/"string") and nullable bools: pandas maps None to its own NA
        return _extension_array(values, dtype)
    if values.dtype.kind == "f" and dtype.startswith(("int", "uint")):
        return values  # missing ints were passed as NaN floats, as pandas itself would
    try:
        return values.astype(dtype, copy=False)
    except (TypeError, ValueError):
        return _extension_array(values, dtype)


def _extension_array(values: AnyArray, dtype: str) -> Any:
    """``pd.array`` with a dtype named by the manifest (e.g. ``"Int64"``, ``"str"``)."""
    # pandas-stubs types `dtype` as literals per overload; ours is a runtime string.
    return pd.array(values, dtype=dtype)  # type: ignore[call-overload]


def to_matrix(columns: Columns, names: list[str], dtype: Any = np.float64) -> AnyArray:
    """Stack numeric columns into a C-contiguous [rows, features] array: a copy of the
    validator's matrix when the columns are its, in this order (a copy, because a runtime may
    transform its input in place and the observers still read the columns)."""
    if type(columns) is MatrixColumns and list(columns) == names:
        return columns.matrix.astype(dtype)
    first = columns[names[0]]
    out = np.empty((first.shape[0], len(names)), dtype=dtype)
    for j, name in enumerate(names):
        column = columns[name]
        if column.dtype == object:
            column = np.array([np.nan if v is None else v for v in column], dtype=np.float64)
        out[:, j] = column
    return out
