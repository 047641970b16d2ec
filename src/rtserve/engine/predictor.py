"""A loaded bundle ready to answer, in-process: validate -> predict -> shape the outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.schema import Schema
from rtserve.bundle.validator import Validator
from rtserve.engine.predictions import Predictions
from rtserve.errors import MalformedRequestError, PredictionError, RtserveError
from rtserve.runtimes.base import ModelOutput, Runtime
from rtserve.types import Columns

#: Probabilities/values of the warm-up must match the recorded ones within this (native runtimes
#: reproduce them exactly; the margin absorbs float32 runtimes).
DEFAULT_PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ParityReport:
    """How the loaded runtime's outputs compare with the recorded ones on the validation sample."""

    rows: int
    max_abs_diff: float
    label_mismatch_rate: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when outputs are within tolerance and no label differs."""
        return self.max_abs_diff <= self.tolerance and self.label_mismatch_rate == 0.0

    def describe(self) -> str:
        """One sentence for logs and the CLI."""
        verdict = "matches" if self.passed else "does NOT match"
        return (
            f"warm-up on {self.rows} validation rows {verdict} the recorded outputs "
            f"(max |diff| {self.max_abs_diff:.3g}, tolerance {self.tolerance:g}, "
            f"labels differing {self.label_mismatch_rate:.1%})"
        )


class Predictor:
    """A bundle's schema validator and runtime; usable from a notebook, a web view or a batch job.

    ``predict`` accepts a list of records, one record, a dict of columns or a DataFrame.
    """

    def __init__(self, bundle: Bundle, runtime: Runtime) -> None:
        self.bundle = bundle
        self.runtime = runtime
        self.schema: Schema = bundle.manifest.model_schema
        self.validator = Validator(self.schema)

    def __repr__(self) -> str:
        return f"Predictor(name={self.name!r}, version={self.version!r})"

    @property
    def name(self) -> str:
        """The bundle's model name."""
        return self.bundle.name

    @property
    def version(self) -> str:
        """The bundle's version label."""
        return self.bundle.version

    @property
    def digest(self) -> str:
        """The bundle digest (``sha256:<hex>``)."""
        return self.bundle.digest

    def validate(self, data: Any) -> Columns:
        """Check ``data`` against the schema and return columns ready for the runtime."""
        if type(data).__name__ == "DataFrame":
            return self.validator.frame(data)
        if isinstance(data, Mapping):
            if data and all(_is_column(v) for v in data.values()):
                return self.validator.columns(data)
            return self.validator.records([data])
        if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
            return self.validator.records(data)
        raise MalformedRequestError(
            f"cannot predict on a {type(data).__name__}: pass a list of records, one record, a "
            "dict of columns or a pandas DataFrame"
        )

    def predict(self, data: Any) -> Predictions:
        """Validate and predict; raises ``ValidationError`` naming every offending field."""
        return self.predict_columns(self.validate(data))

    def predict_columns(self, columns: Columns) -> Predictions:
        """Predict already validated columns."""
        return Predictions(self.run(columns), self.schema.outputs)

    def run(self, columns: Columns) -> ModelOutput:
        """The runtime's raw outputs; any failure becomes a ``PredictionError``."""
        try:
            return self.runtime.predict(columns)
        except RtserveError:
            raise
        except Exception as exc:  # the framework's own errors: translate at the boundary
            raise PredictionError(
                f"model {self.name}:{self.version} failed to predict: {type(exc).__name__}: {exc}"
            ) from exc

    def check_parity(self, tolerance: float = DEFAULT_PARITY_TOLERANCE) -> ParityReport:
        """Predict the validation sample and compare with the outputs recorded at build."""
        sample = self.bundle.read_validation()
        columns = self.validator.columns(sample.inputs)
        actual = self.run(columns)
        recorded = recorded_output(sample.outputs)
        diff, labels = actual.max_abs_diff(recorded)
        return ParityReport(sample.rows, diff, labels, tolerance)


def _is_column(value: Any) -> bool:
    """A list/tuple or a 1-D array/Series: a column of values, not one value of a record."""
    if isinstance(value, (list, tuple)):
        return True
    shape = getattr(value, "shape", None)  # numpy scalars have shape (), arrays and Series (n,)
    return isinstance(shape, tuple) and len(shape) == 1


def recorded_output(outputs: Mapping[str, list[Any]]) -> ModelOutput:
    """The validation sample's recorded outputs as arrays."""
    import numpy as np

    def arr(key: str) -> Any:
        values = outputs.get(key)
        if values is None:
            return None
        return (
            np.array([np.nan if v is None else v for v in values], dtype=float)
            if key != "label"
            else np.asarray(values)
        )

    return ModelOutput(label=arr("label"), probabilities=arr("probabilities"), value=arr("value"))
