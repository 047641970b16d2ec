"""Both bundles score the same rows: a row either bundle's schema refuses is set aside for both.

Each bundle sees only its own input fields (a table usually also holds the label, an id and the
fields segments are cut by, which a schema with ``extra_fields: reject`` would refuse); a row
that breaks either schema, or whose label is missing or unknown, is counted and listed with every
reason and left out of every number, so the two models are always compared on identical rows.
Classifier outputs are aligned on OLD's class order (NEW may list its classes differently; both
must have the same set), and labels become class indices so that agreement and accuracy compare
classes, not their spellings (``1``, ``1.0`` and ``np.int64(1)`` are one class).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rtserve.engine.predictor import Predictor
from rtserve.errors import ComparisonError, FieldViolation, ValidationError
from rtserve.evaluation.data import Chunk, is_missing
from rtserve.runtimes.base import ModelOutput
from rtserve.types import AnyArray, Columns, FloatArray, Task

#: Set-aside rows listed with their reasons (all are counted).
LISTED_INVALID = 100
#: How a missing segment value is shown.
MISSING_VALUE = "(missing)"
#: Who refused a row: the OLD bundle's schema, the NEW one's, or the data itself (the label).
OLD, NEW, DATA = "old", "new", "data"


@dataclass(frozen=True)
class Reason:
    """Why one row was set aside: who refused it, which field, which rule, in words."""

    by: str
    field: str
    rule: str
    error: str

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"by": self.by, "field": self.field, "rule": self.rule, "error": self.error}


@dataclass(frozen=True)
class InvalidRow:
    """A row left out of the comparison: its position in the source (and decision key)."""

    row: int
    key: str | None
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"row": self.row}
        if self.key is not None:
            out["decision"] = self.key
        out["reasons"] = [r.to_dict() for r in self.reasons]
        return out


@dataclass(frozen=True)
class Side:
    """One compared bundle: what it is and where it came from."""

    name: str
    version: str
    digest: str
    source: str

    def describe(self) -> str:
        """``fraud:3``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "source": self.source,
        }


@dataclass
class Paired:
    """Both models' outputs on the rows valid for both, with labels and segment values.

    Arrays are in scored-row order. Classifiers: ``old_labels``/``new_labels`` (and ``truth``)
    are indices into ``classes``; ``old_proba``/``new_proba`` columns follow ``classes`` (None
    when either model has no probabilities). Regressors: ``old_values``/``new_values`` and
    ``truth`` as floats.
    """

    old: Side
    new: Side
    task: Task
    classes: list[str] | None
    positions: AnyArray
    old_labels: AnyArray | None = None
    new_labels: AnyArray | None = None
    old_proba: FloatArray | None = None
    new_proba: FloatArray | None = None
    old_values: FloatArray | None = None
    new_values: FloatArray | None = None
    truth: AnyArray | None = None
    fields: dict[str, AnyArray] = field(default_factory=dict)
    rows_read: int = 0
    invalid_count: int = 0
    invalid: list[InvalidRow] = field(default_factory=list)
    invalid_reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        """Rows both models scored."""
        return int(self.positions.shape[0])

    @property
    def labelled(self) -> bool:
        """Whether the rows carry true labels."""
        return self.truth is not None


def string_fields(*predictors: Predictor, extra: Iterable[str] = ()) -> list[str]:
    """Fields read as text from CSV: every schema's strings, plus the segment fields."""
    from rtserve.bundle.schema import FieldType

    names = {s.name for p in predictors for s in p.schema.inputs if s.type is FieldType.STRING}
    return sorted(names | set(extra))


def pair(
    old: Predictor,
    new: Predictor,
    chunks: Iterable[Chunk],
    *,
    sides: tuple[Side, Side],
    labels: str | None = None,
    fields: Sequence[str] = (),
) -> Paired:
    """Score every chunk with both predictors on the rows valid for both.

    Raises:
        ComparisonError: the models answer different kinds of output (task, classes, width);
            the data lacks the label column or a segment field; no row is valid for both.
    """
    task, classes = _compatible(old, new)
    index = {key: i for i, key in enumerate(classes or [])}
    state = _Accumulator(fields, labels)
    for chunk in chunks:
        state.rows_read += chunk.size
        extracted = {name: _column(chunk, name, "--segment-by") for name in fields}
        truth_raw = _column(chunk, labels, "--labels") if labels is not None else None
        state.seen.update(_present(chunk, [*fields, *([labels] if labels else [])]))
        bad: dict[int, list[Reason]] = {
            i: [Reason(DATA, "inputs", "no_inputs", why)] for i, why in chunk.unreadable.items()
        }
        start_keep = [i for i in range(chunk.size) if i not in bad]
        old_cols, old_kept = _validated(old, OLD, chunk.rows, start_keep, bad)
        new_cols, new_kept = _validated(new, NEW, chunk.rows, start_keep, bad)
        truth: list[Any] = []
        if truth_raw is not None and labels is not None:
            for i in start_keep:
                value, reason = _label(truth_raw[i], labels, task, index)
                if reason is not None:
                    bad.setdefault(i, []).append(reason)
                truth.append(value)
        keep = [i for i in start_keep if i not in bad]
        state.set_aside(chunk, bad)
        if not keep or old_cols is None or new_cols is None:
            continue
        out_old = old.predict_columns(_subset(old_cols, old_kept, keep)).output
        out_new = new.predict_columns(_subset(new_cols, new_kept, keep)).output
        state.add(chunk, keep, out_old, out_new)
        if truth_raw is not None:
            where = dict(zip(start_keep, truth, strict=True))
            state.truth.extend(where[i] for i in keep)
        for name in fields:
            state.fields[name].extend(_segment_value(extracted[name][i]) for i in keep)
    return state.finish(old, new, sides, task, classes, index)


class _Accumulator:
    """What ``pair`` gathers chunk by chunk."""

    def __init__(self, fields: Sequence[str], labels: str | None) -> None:
        self.names = list(fields)
        self.labels = labels
        self.rows_read = 0
        self.positions: list[int] = []
        self.old: list[ModelOutput] = []
        self.new: list[ModelOutput] = []
        self.truth: list[Any] = []
        self.fields: dict[str, list[str]] = {name: [] for name in fields}
        self.seen: set[str] = set()
        self.invalid_count = 0
        self.invalid: list[InvalidRow] = []
        self.reasons: Counter[tuple[str, str, str]] = Counter()

    def set_aside(self, chunk: Chunk, bad: dict[int, list[Reason]]) -> None:
        for i in sorted(bad):
            reasons = tuple(bad[i])
            self.invalid_count += 1
            self.reasons.update((r.by, r.field, r.rule) for r in reasons)
            if len(self.invalid) < LISTED_INVALID:
                key = chunk.keys[i] if chunk.keys is not None else None
                self.invalid.append(InvalidRow(chunk.start + i, key, reasons))

    def add(self, chunk: Chunk, keep: list[int], old: ModelOutput, new: ModelOutput) -> None:
        self.positions.extend(chunk.start + i for i in keep)
        self.old.append(old)
        self.new.append(new)

    def finish(
        self,
        old: Predictor,
        new: Predictor,
        sides: tuple[Side, Side],
        task: Task,
        classes: list[str] | None,
        index: dict[str, int],
    ) -> Paired:
        for name in [*self.names, *([self.labels] if self.labels else [])]:
            if name not in self.seen:
                option = "--labels" if name == self.labels else "--segment-by"
                raise ComparisonError(
                    f"{option} {name}: no row of the data has a value for {name!r}",
                    field=name,
                )
        if not self.positions:
            raise ComparisonError(
                f"none of the {self.rows_read} rows is valid for both models, so there is "
                f"nothing to compare ({_top_reasons(self.reasons)})",
                field="data",
            )
        out_old, out_new = ModelOutput.concat(self.old), ModelOutput.concat(self.new)
        paired = Paired(
            old=sides[0],
            new=sides[1],
            task=task,
            classes=classes,
            positions=np.asarray(self.positions, dtype=np.int64),
            fields={name: np.asarray(values, dtype=object) for name, values in self.fields.items()},
            rows_read=self.rows_read,
            invalid_count=self.invalid_count,
            invalid=self.invalid,
            invalid_reasons=self.reasons,
        )
        if task is Task.CLASSIFICATION:
            paired.old_labels = _indices(out_old.label, index, old)
            paired.new_labels = _indices(out_new.label, index, new)
            if out_old.probabilities is not None and out_new.probabilities is not None:
                paired.old_proba = np.asarray(out_old.probabilities, dtype=np.float64)
                paired.new_proba = _aligned(out_new.probabilities, new, classes or [])
            if self.labels is not None:
                paired.truth = np.asarray(self.truth, dtype=np.int64)
        else:
            paired.old_values = _flat(out_old.value)
            paired.new_values = _flat(out_new.value)
            if self.labels is not None:
                paired.truth = np.asarray(self.truth, dtype=np.float64)
        return paired


def _compatible(old: Predictor, new: Predictor) -> tuple[Task, list[str] | None]:
    """The shared task and OLD's class keys; refuses outputs that cannot be compared."""
    a, b = old.schema.outputs, new.schema.outputs
    who = f"OLD {old.name}:{old.version} and NEW {new.name}:{new.version}"
    if a.task is not b.task:
        raise ComparisonError(
            f"{who} answer different kinds of output ({a.task.value} vs {b.task.value}); "
            "compare needs two classifiers or two regressors",
            field="outputs",
        )
    if a.task is Task.REGRESSION:
        if a.width != 1 or b.width != 1:
            raise ComparisonError(
                f"{who}: compare takes regressors with one value per row (widths "
                f"{a.width} and {b.width})",
                field="outputs",
            )
        return a.task, None
    old_classes = [str(c) for c in a.classes or []]
    new_classes = [str(c) for c in b.classes or []]
    if sorted(old_classes) != sorted(new_classes):
        raise ComparisonError(
            f"{who} predict different classes ({old_classes} vs {new_classes}); compare needs "
            "the same set of classes",
            field="outputs",
        )
    return a.task, old_classes


def _present(chunk: Chunk, names: list[str]) -> set[str]:
    """The names some row of the chunk has a value for."""
    if isinstance(chunk.rows, pd.DataFrame):
        return {n for n in names if n in chunk.rows.columns and chunk.rows[n].notna().any()}
    return {n for n in names if any(not is_missing(r.get(n)) for r in chunk.rows)}


def _column(chunk: Chunk, name: str, option: str) -> list[Any]:
    """A column's values for every row of the chunk (None where a record lacks it)."""
    rows = chunk.rows
    if isinstance(rows, pd.DataFrame):
        if name not in rows.columns:
            shown = ", ".join(str(c) for c in rows.columns[:20])
            raise ComparisonError(
                f"{option} {name}: the data has no column {name!r} (its columns: {shown})",
                field=name,
            )
        return list(rows[name].to_numpy(dtype=object))
    return [r.get(name) for r in rows]


def _validated(
    predictor: Predictor,
    by: str,
    rows: list[dict[str, Any]] | pd.DataFrame,
    positions: list[int],
    bad: dict[int, list[Reason]],
) -> tuple[Columns | None, list[int]]:
    """Columns of the rows at ``positions`` the schema accepts, and which rows those are.

    Rows the schema refuses are added to ``bad`` with their reasons. The validator keeps at most
    a thousand violations per call, so validation repeats on the remaining rows until they pass.
    """
    names = predictor.schema.field_names
    keep = positions
    while keep:
        inputs = _inputs(rows, keep, names, predictor)
        try:
            return predictor.validate(inputs), keep
        except ValidationError as exc:
            refused = _refused(exc.violations, keep)
        for position, violations in refused.items():
            bad.setdefault(position, []).extend(
                Reason(by, v.field, v.rule, v.message) for v in violations
            )
        keep = [p for p in keep if p not in refused]
    return None, []


def _refused(violations: list[FieldViolation], keep: list[int]) -> dict[int, list[FieldViolation]]:
    """Violations by source position (one without a row concerns every row)."""
    found: dict[int, list[FieldViolation]] = {}
    for violation in violations:
        for position in keep if violation.row is None else [keep[violation.row]]:
            found.setdefault(position, []).append(violation)
    return found


def _inputs(
    rows: list[dict[str, Any]] | pd.DataFrame,
    keep: list[int],
    names: list[str],
    predictor: Predictor,
) -> list[dict[str, Any]] | pd.DataFrame:
    """The rows at ``keep`` with only the model's own fields."""
    if isinstance(rows, pd.DataFrame):
        present = [n for n in names if n in rows.columns]
        if not present:
            raise ComparisonError(
                f"the data has none of {predictor.name}:{predictor.version}'s input fields "
                f"({', '.join(names)})",
                field="data",
            )
        return rows.iloc[keep][present]
    return [{n: rows[i][n] for n in names if n in rows[i]} for i in keep]


def _subset(columns: Columns, kept: list[int], keep: list[int]) -> Columns:
    """The validated columns of the rows ``keep`` (a subset of ``kept``, both ascending)."""
    if kept == keep:
        return columns
    at = np.searchsorted(np.asarray(kept), np.asarray(keep))
    return {name: values[at] for name, values in columns.items()}


def _label(value: Any, column: str, task: Task, index: dict[str, int]) -> tuple[Any, Reason | None]:
    """A row's true label as a class index (classifiers) or a float (regressors), or why not."""
    if is_missing(value):
        return None, Reason(DATA, column, "label_missing", f"{column}: no label")
    if task is Task.CLASSIFICATION:
        found = class_index(value, index)
        if found is None:
            return None, Reason(
                DATA,
                column,
                "label_unknown",
                f"{column}: {value!r} is not one of the classes {list(index)}",
            )
        return found, None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or isinstance(value, (str, bytes)):
        return None, Reason(
            DATA, column, "label_not_number", f"{column}: {value!r} is not a finite number"
        )
    return number, None


def class_index(value: Any, index: dict[str, int]) -> int | None:
    """The class ``value`` names: by its text, or a whole float by its integer's (``1.0`` is 1)."""
    if isinstance(value, np.generic):
        value = value.item()
    found = index.get(str(value))
    if found is None and isinstance(value, float) and value.is_integer():
        found = index.get(str(int(value)))
    return found


def _indices(labels: AnyArray | None, index: dict[str, int], predictor: Predictor) -> AnyArray:
    if labels is None:
        raise ComparisonError(
            f"{predictor.name}:{predictor.version} answered no labels", field="outputs"
        )
    out = np.empty(labels.shape[0], dtype=np.int64)
    for i, value in enumerate(labels.tolist()):
        found = class_index(value, index)
        if found is None:
            raise ComparisonError(
                f"{predictor.name}:{predictor.version} predicted {value!r}, which is not one of "
                f"its classes {list(index)}",
                field="outputs",
            )
        out[i] = found
    return out


def _aligned(proba: AnyArray, predictor: Predictor, classes: list[str]) -> FloatArray:
    """NEW's probability columns in OLD's class order."""
    own = [str(c) for c in predictor.schema.outputs.classes or []]
    order = [own.index(c) for c in classes]
    return np.asarray(proba, dtype=np.float64)[:, order]


def _flat(values: AnyArray | None) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(array.shape[0]) if array.ndim == 2 else array


def _segment_value(value: Any) -> str:
    if is_missing(value):
        return MISSING_VALUE
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _top_reasons(reasons: Counter[tuple[str, str, str]]) -> str:
    if not reasons:
        return "no rows were read"
    return "; ".join(
        f"{count} × {by} {name} {rule}" for (by, name, rule), count in reasons.most_common(3)
    )
