"""The validation sample: fixed rows with the outputs the model gave for them at build time."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from rtserve.types import AnyArray, Columns

#: Rows kept by default: enough for a parity check, small enough to load in milliseconds.
DEFAULT_ROWS = 200


class ValidationSample(BaseModel):
    """Validated input columns (JSON values, null for missing) and the recorded outputs."""

    rows: int
    inputs: dict[str, list[Any]]
    #: ``label`` and ``probabilities`` for classifiers, ``value`` for regressors.
    outputs: dict[str, list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """The inputs as one ``{field: value}`` dict per row (nulls left out)."""
        names = list(self.inputs)
        return [
            {n: self.inputs[n][i] for n in names if self.inputs[n][i] is not None}
            for i in range(self.rows)
        ]


def sample_rows(n_rows: int, limit: int, seed: int = 0) -> AnyArray:
    """Row positions of a reproducible random subset, in their original order."""
    if n_rows <= limit:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=limit, replace=False))


def with_missing_rows(columns: Columns, rows: AnyArray, per_field: int = 2) -> AnyArray:
    """``rows`` with, for every column that has missing values, a few rows where it is missing.

    A random subset may hold none, and then checks on it (the export's parity gate, the warm-up)
    would never see how the model treats a missing value. Rows without any missing value make
    room, so the count stays what was asked for.
    """
    masks: list[AnyArray] = []
    for values in columns.values():
        mask = _missing(values)
        if mask is not None and mask.any():
            masks.append(mask)
    if not masks:
        return rows
    chosen = set(rows.tolist())
    complete = [r for r in rows.tolist() if not any(m[r] for m in masks)]
    for missing in masks:
        shortfall = per_field - sum(bool(missing[r]) for r in chosen)
        for candidate in np.flatnonzero(missing).tolist():
            if shortfall <= 0 or not complete:
                break
            if candidate not in chosen:
                chosen.discard(complete.pop())
                chosen.add(candidate)
                shortfall -= 1
    return np.asarray(sorted(chosen), dtype=rows.dtype)


def _missing(values: AnyArray) -> AnyArray | None:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype == object:
        return np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    return None


def jsonable(values: AnyArray) -> list[Any]:
    """A numpy column (or matrix) as JSON-ready Python values; NaN becomes null."""
    if values.dtype.kind == "f":
        return _nan_to_none(values.tolist())
    return list(values.tolist())


def _nan_to_none(values: list[Any]) -> list[Any]:
    return [
        _nan_to_none(v) if isinstance(v, list) else (None if v != v else v)  # NaN != NaN
        for v in values
    ]


def take(columns: Columns, rows: AnyArray) -> Columns:
    """The given rows of every column."""
    return {name: values[rows] for name, values in columns.items()}
