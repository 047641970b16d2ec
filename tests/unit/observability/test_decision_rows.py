"""The decision log's batch shortcuts give exactly what the plain way gives, batch shape by shape.

The plain way: each field's arrays joined with ``np.concatenate`` and ``tolist``, one dict per
row, one ``msgspec.json.encode`` and sha256 per row, one list per row of probabilities.
"""

from __future__ import annotations

import hashlib

import msgspec
import numpy as np
import pytest

from rtserve.bundle.schema import FieldSpec, FieldType, OutputSpec, Schema
from rtserve.events import BatchInfo, PredictionEvent
from rtserve.observability.decisions.rows import (
    _values_of_one_dtype,
    input_dicts,
    input_values,
    row_objects,
    row_outputs,
    sha256_each,
)
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Task

NAMES = ["a", "b", "c"]
SPECIAL = [0.1, -0.0, float("nan"), float("inf"), 5e-324, 1e22, -2.5e-7, 1 / 3]


def event(columns: dict[str, np.ndarray], rows: int) -> PredictionEvent:
    return PredictionEvent(
        "r", 0.0, "m", "1", "d", "records", columns, ModelOutput(), rows, 0.0,
        BatchInfo(0.0, 0.0, rows, 1),
    )  # fmt: skip


def floats(rows: int, seed: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (len(NAMES), rows)
    if np.dtype(dtype) == np.float64:
        values = rng.choice(np.array(SPECIAL), size=shape)
    elif np.dtype(dtype).kind == "f":
        values = rng.normal(size=shape).astype(dtype)
    else:
        values = rng.integers(0, 100, size=shape).astype(dtype)
    return {name: values[i] for i, name in enumerate(NAMES)}


def plain(events: list[PredictionEvent], names: list[str]) -> list[list[object]]:
    return [np.concatenate([e.columns[n] for e in events]).tolist() for n in names]


def batch_of(rows: list[int], dtype: str = "float64") -> list[PredictionEvent]:
    return [event(floats(r, seed, dtype), r) for seed, r in enumerate(rows)]


@pytest.mark.parametrize(
    "rows",
    [[1], [1] * 64, [4] * 5, [1, 3, 0, 2, 1], [0, 0], [16] * 3 + [1]],
    ids=["one", "one-row-events", "four-row-events", "mixed-rows", "no-rows", "mostly-16"],
)
def test_joined_float_columns_give_the_plain_values(rows):
    events = batch_of(rows)
    assert _values_of_one_dtype(events, NAMES) is not None  # the shortcut, not the plain way
    assert repr(input_values(events, NAMES)) == repr(plain(events, NAMES))


@pytest.mark.parametrize("dtype", ["int64", "int8", "uint64", "bool", "float32", "float16", ">f8"])
def test_every_numeric_dtype_reads_back_as_the_same_python_scalars(dtype):
    events = batch_of([1, 2, 1], dtype)
    assert _values_of_one_dtype(events, NAMES) is not None
    values = input_values(events, NAMES)
    assert repr(values) == repr(plain(events, NAMES))
    assert {type(v) for column in values for v in column} == {
        type(v) for column in plain(events, NAMES) for v in column
    }


def test_a_field_whose_dtype_differs_between_events_is_promoted_as_concatenate_does():
    first, second = floats(1, 0), floats(1, 1)
    first["a"] = np.array([3], dtype=np.int64)  # 3 alone would be written "3", joined "3.0"
    events = [event(first, 1), event(second, 1)]
    assert _values_of_one_dtype(events, NAMES) is None
    assert repr(input_values(events, NAMES)) == repr(plain(events, NAMES))
    assert input_values(events, NAMES)[0][0] == 3.0


def test_non_contiguous_object_and_two_dimensional_columns_take_the_plain_way():
    matrix = np.asarray(np.random.default_rng(0).normal(size=(2, 3)))
    strided = {name: matrix[:, i] for i, name in enumerate(NAMES)}  # views with a stride
    objects = {name: np.array(["x", None], dtype=object) for name in NAMES}
    wide = {name: np.array([[1.0], [2.0]]) for name in NAMES}  # one value per row, in a list
    for columns in (strided, objects, wide):
        events = [event(columns, 2)]
        assert _values_of_one_dtype(events, NAMES) is None
        assert repr(input_values(events, NAMES)) == repr([columns[n].tolist() for n in NAMES])


NAME_SETS = [
    ["f0", "f1", "f10", "f2"],
    ['f"2', "f10", "é\\1"],  # msgspec takes no quote or backslash in a field name: dicts
    ["_1", "_0", "é\u2028<1>", "", "class"],  # names a generated struct must not trip over
]


@pytest.mark.parametrize("names", NAME_SETS, ids=["plain", "escaped", "awkward"])
def test_input_hashes_are_the_sha256_of_each_rows_dict(names):
    names = sorted(names)
    rng = np.random.default_rng(1)
    values = [rng.choice(np.array(SPECIAL), size=5).tolist() for _ in names]
    values[0] = [1, True, None, 'a\n"b"', 2**70]  # any JSON scalar, in one field
    dicts = input_dicts(values, names)
    assert [list(d) for d in dicts] == [names] * 5
    expected = ["sha256:" + hashlib.sha256(msgspec.json.encode(d)).hexdigest() for d in dicts]
    assert sha256_each(row_objects(values, names)) == expected
    assert sha256_each(dicts) == expected


def test_fields_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        row_objects([[1.0, 2.0], [1.0]], ["a", "b"])


def plain_outputs(out: ModelOutput, n_rows: int, schema: Schema | None) -> list[dict]:
    classes = [str(c) for c in schema.outputs.classes or []] if schema is not None else []
    labels = out.label.tolist() if out.label is not None else None
    probs = out.probabilities.tolist() if out.probabilities is not None else None
    if probs is not None and probs and len(probs[0]) == len(classes):
        probs = [dict(zip(classes, p, strict=True)) for p in probs]
    if labels is not None and probs is not None:
        return [{"label": a, "probabilities": b} for a, b in zip(labels, probs, strict=True)]
    if labels is not None:
        return [{"label": a} for a in labels]
    if probs is not None:
        return [{"probabilities": b} for b in probs]
    if out.value is not None:
        return [{"value": v} for v in out.value.tolist()]
    return [{} for _ in range(n_rows)]


def classifier(classes: list[object]) -> Schema:
    return Schema(
        inputs=[FieldSpec(name="x", type=FieldType.FLOAT)],
        outputs=OutputSpec(task=Task.CLASSIFICATION, classes=classes),
    )


LABELS = np.array([0, 1, 1])
PROBS = np.array([[0.9, 0.1], [0.25, 0.75], [float("nan"), 1 / 3]])
OUTPUTS = {
    "labels-and-named-probabilities": (ModelOutput(label=LABELS, probabilities=PROBS), [0, 1]),
    "class-names": (ModelOutput(label=LABELS, probabilities=PROBS), ["no", "yes"]),
    "more-classes-than-columns": (ModelOutput(label=LABELS, probabilities=PROBS), [0, 1, 2]),
    "probabilities-only": (ModelOutput(probabilities=PROBS), [0, 1]),
    "labels-only": (ModelOutput(label=np.array(["a", "b", "c"], dtype=object)), ["a", "b"]),
    "values": (ModelOutput(value=np.array([0.5, -1e-9, 3.0])), None),
    "vector-values": (ModelOutput(value=np.array([[0.5, 1.0], [2.0, 3.0]])), None),
    "no-rows": (ModelOutput(label=LABELS[:0], probabilities=PROBS[:0]), [0, 1]),
    "nothing": (ModelOutput(), None),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
@pytest.mark.parametrize("with_schema", [True, False], ids=["schema", "no-schema"])
def test_row_outputs_are_the_plain_ones(case, with_schema):
    out, classes = OUTPUTS[case]
    schema = classifier(classes) if with_schema and classes is not None else None
    n_rows = len(out) or 3
    got = row_outputs(out, n_rows, schema)
    assert msgspec.json.encode(got) == msgspec.json.encode(plain_outputs(out, n_rows, schema))
