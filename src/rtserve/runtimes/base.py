"""The runtime interface: one adapter per framework packages and loads its artifacts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rtserve.bundle.manifest import InputFrame, RuntimeSpec
from rtserve.bundle.schema import OutputSpec
from rtserve.types import AnyArray, Columns


@dataclass(slots=True)
class ModelOutput:
    """Raw outputs for a batch of rows: label + probabilities, or value (same row order)."""

    label: AnyArray | None = None
    probabilities: AnyArray | None = None
    value: AnyArray | None = None

    def __len__(self) -> int:
        for array in (self.label, self.probabilities, self.value):
            if array is not None:
                return int(array.shape[0])
        return 0

    @classmethod
    def concat(cls, outputs: Sequence[ModelOutput]) -> ModelOutput:
        """Several batches' outputs joined row-wise, in order (one output comes back as it is).

        An array present in every part is concatenated; one missing from any part is None.
        """
        if len(outputs) == 1:
            return outputs[0]

        def join(parts: list[AnyArray | None]) -> AnyArray | None:
            present = [p for p in parts if p is not None]
            return np.concatenate(present) if present and len(present) == len(parts) else None

        return cls(
            label=join([o.label for o in outputs]),
            probabilities=join([o.probabilities for o in outputs]),
            value=join([o.value for o in outputs]),
        )

    def rows(self, start: int, stop: int) -> ModelOutput:
        """The outputs of rows ``start:stop`` (how a batch is split back into requests)."""
        return ModelOutput(
            label=None if self.label is None else self.label[start:stop],
            probabilities=None if self.probabilities is None else self.probabilities[start:stop],
            value=None if self.value is None else self.value[start:stop],
        )

    def max_abs_diff(self, other: ModelOutput) -> tuple[float, float]:
        """(max |difference| of probabilities/values, share of rows whose label differs)."""
        diff = 0.0
        for mine, theirs in ((self.probabilities, other.probabilities), (self.value, other.value)):
            if mine is not None and theirs is not None:
                a = np.asarray(mine, dtype=np.float64)
                b = np.asarray(theirs, dtype=np.float64)
                if a.shape != b.shape:
                    return float("inf"), 1.0
                if a.size:
                    diff = max(diff, float(np.nanmax(np.abs(a - b))))
                    if bool((np.isnan(a) != np.isnan(b)).any()):
                        return float("inf"), 1.0
        labels = 0.0
        if self.label is not None and other.label is not None and len(self.label):
            mine_l = np.asarray(self.label).astype(str)
            theirs_l = np.asarray(other.label).astype(str)
            labels = float(np.mean(mine_l != theirs_l))
        return diff, labels


@dataclass(frozen=True)
class Trust:
    """What the operator allows when loading: pickle only with a pinned bundle digest."""

    allow_pickle: bool = False
    pinned_digest: str | None = None


class Runtime(ABC):
    """A loaded artifact that predicts on validated columns.

    ``predict`` is called from one thread at a time per runtime unless ``thread_safe`` is True,
    with a batch of one or more requests' rows; it returns outputs in the same row order.
    """

    thread_safe: ClassVar[bool] = False

    @abstractmethod
    def predict(self, columns: Columns) -> ModelOutput:
        """Predict every row of ``columns``."""


@dataclass(frozen=True)
class Description:
    """What an adapter learned about a model at build time."""

    outputs: OutputSpec
    input_frame: InputFrame
    options: dict[str, Any]


class RuntimeAdapter(ABC):
    """Packages and loads one framework's models.

    Adapters are stateless; ``accepts`` must not import the framework (it is asked about every
    object), the other methods may.
    """

    name: ClassVar[str]
    #: Distribution names whose versions are recorded and compared at load.
    packages: ClassVar[tuple[str, ...]]

    @abstractmethod
    def accepts(self, model: object) -> bool:
        """True if this adapter can package ``model``."""

    @abstractmethod
    def describe(self, model: Any, sample: Any) -> Description:
        """Task, classes and input layout of ``model``, learned from it and the sample frame."""

    @abstractmethod
    def save(self, model: Any, directory: Path, description: Description) -> RuntimeSpec:
        """Write the artifact under ``directory`` (the bundle root) and say how to load it."""

    @abstractmethod
    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""

    def wrap(self, model: Any, description: Description) -> Runtime | None:
        """A runtime around the in-memory model, to prove the saved artifact reproduces it.

        Adapters whose artifact *is* the model (ONNX) return None: there is nothing to compare.
        """
        return None


def module_of(model: object) -> str:
    """Top-level module that defines the model's class (cheap, imports nothing)."""
    return type(model).__module__.split(".", 1)[0]
