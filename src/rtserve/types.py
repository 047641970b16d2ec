"""Aliases and enums shared across layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

#: Validated input: one numpy array per schema field, all of the same length.
Columns = dict[str, npt.NDArray[Any]]


class MatrixColumns(dict[str, npt.NDArray[Any]]):
    """Columns that are the columns of one C-contiguous ``[rows, fields]`` float64 matrix, in
    the dict's order: a runtime that wants a matrix takes ``matrix`` as it is (or converted in
    one call) instead of stacking the columns again (``runtimes.frame.to_matrix``)."""

    __slots__ = ("matrix",)

    def __init__(self, names: Sequence[str], matrix: npt.NDArray[np.float64]) -> None:
        super().__init__(zip(names, matrix.T, strict=True))
        self.matrix = matrix


#: One input row as a client sends it.
Record = Mapping[str, Any]
Records = Sequence[Record]
FloatArray = npt.NDArray[np.float64]
AnyArray = npt.NDArray[Any]


class Task(StrEnum):
    """What a model's output means."""

    CLASSIFICATION = "classification"  # a label per row, and per-class probabilities when known
    REGRESSION = "regression"  # one value (or a vector of values) per row


class ModelState(StrEnum):
    """Lifecycle of a served model."""

    LOADING = "loading"  # bundle being opened and verified, runtime being created
    WARMING = "warming"  # runtime loaded; warm-up prediction on the validation sample running
    READY = "ready"  # warm-up reproduced the recorded outputs; answers requests
    FAILED = "failed"  # load or warm-up failed; never answers, the reason is kept
    UNLOADED = "unloaded"  # taken out of service (shutdown or swap)
