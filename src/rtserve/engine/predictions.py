"""What a predictor answers: arrays for code, records for JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtserve.bundle.schema import OutputSpec
from rtserve.runtimes.base import ModelOutput
from rtserve.types import AnyArray, Task


@dataclass(slots=True)
class Predictions:
    """Outputs for a batch of rows, in row order.

    ``label`` and ``probabilities`` (columns in ``classes`` order) for classifiers, ``value`` for
    regressors; each is exactly what the model returned.
    """

    output: ModelOutput
    spec: OutputSpec

    def __len__(self) -> int:
        return len(self.output)

    @property
    def task(self) -> Task:
        """Classification or regression."""
        return self.spec.task

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in the column order of ``probabilities`` (None for regressors)."""
        return list(self.spec.classes) if self.spec.classes is not None else None

    @property
    def label(self) -> AnyArray | None:
        """One predicted label per row (classifiers)."""
        return self.output.label

    @property
    def probabilities(self) -> AnyArray | None:
        """Per-class probabilities, one row per input row (classifiers that have them)."""
        return self.output.probabilities

    @property
    def value(self) -> AnyArray | None:
        """One value (or vector of values) per row (regressors)."""
        return self.output.value

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: ``{"label", "probabilities": {class: p}}`` or ``{"value"}``."""
        out = self.output
        if self.spec.task is Task.CLASSIFICATION:
            labels = _plain(out.label)
            if out.probabilities is None:
                return [{"label": label} for label in labels]
            keys = [str(c) for c in self.spec.classes or []]
            rows = np.asarray(out.probabilities, dtype=np.float64).tolist()
            return [
                {"label": label, "probabilities": dict(zip(keys, row, strict=True))}
                for label, row in zip(labels, rows, strict=True)
            ]
        return [{"value": v} for v in _plain(out.value)]

    def to_frame(self) -> Any:
        """A pandas DataFrame (label + one ``proba_<class>`` column each, or value columns)."""
        import pandas as pd

        out = self.output
        if self.spec.task is Task.CLASSIFICATION:
            data: dict[str, Any] = {"label": out.label}
            if out.probabilities is not None:
                for j, cls in enumerate(self.spec.classes or []):
                    data[f"proba_{cls}"] = out.probabilities[:, j]
            return pd.DataFrame(data)
        value = np.asarray(out.value)
        if value.ndim == 1:
            return pd.DataFrame({"value": value})
        return pd.DataFrame(value, columns=[f"value_{j}" for j in range(value.shape[1])])


def _plain(values: AnyArray | None) -> list[Any]:
    if values is None:
        return []
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return [None if v != v else v for v in array.tolist()]
    return list(array.tolist())
