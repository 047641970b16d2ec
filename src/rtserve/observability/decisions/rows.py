"""A batch of prediction events as per-row inputs, input hashes and outputs, in a few C calls.

The decision log writes one record per predicted row from a thread that holds the GIL the event
loop needs, so per-field and per-row Python work is what it must avoid. Every function here
gives exactly the values (and so the JSON bytes) of the plain way: each field's arrays joined
with ``np.concatenate`` and ``tolist``, one dict per row, one ``msgspec.json.encode`` per hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from rtserve.bundle.schema import Schema
from rtserve.events import PredictionEvent
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns

#: dtype kinds whose raw bytes read back as the same Python scalars (bool, ints, floats); never
#: object arrays, whose buffers hold pointers.
_PLAIN_KINDS = frozenset("biuf")
_dtype_of = attrgetter("dtype")
_ndim_of = attrgetter("ndim")
#: msgspec refuses these in a renamed struct field (it writes the name without escaping it).
_UNRENAMEABLE = frozenset('"\\') | frozenset(map(chr, range(0x20)))
_encoder = msgspec.json.Encoder()


def input_values(events: Sequence[PredictionEvent], names: Sequence[str]) -> list[list[Any]]:
    """Each field's values over all rows of ``events``, as the Python scalars ``tolist`` gives.

    A dense model's columns (every one a contiguous 1-D array of one numeric dtype) are joined
    with one ``bytes.join`` and reordered field by field: numpy's overhead per array would
    otherwise cost more than the values themselves. Any other batch joins each field's arrays.
    """
    values = _values_of_one_dtype(events, names)
    if values is not None:
        return values
    if len(events) == 1:
        return [events[0].columns[n].tolist() for n in names]
    return [np.concatenate([e.columns[n] for e in events]).tolist() for n in names]


def input_dicts(values: Sequence[Sequence[Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Each row as a dict of its fields, in ``names`` order."""
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def row_objects(values: Sequence[Sequence[Any]], names: Sequence[str]) -> list[Any]:
    """Each row as an object that JSON-encodes as its dict (``input_dicts``) does.

    A struct with ``names`` as its encoded field names costs a tenth of a dict to build and is
    made straight from the field lists; names msgspec cannot take as field names (with a quote,
    a backslash or a control character) get a dict.
    """
    row_type = _row_type(tuple(names))
    if row_type is None or not names:
        return input_dicts(values, names)
    if len({len(v) for v in values}) != 1:
        raise ValueError(f"input fields of different lengths: {[len(v) for v in values]}")
    return list(map(row_type, *values))


def sha256_each(objects: Sequence[Any]) -> list[str]:
    """``sha256:<hex>`` of each object's JSON (``msgspec.json.encode``), encoded in one call."""
    if not objects:
        return []
    lines = _encoder.encode_lines(objects).split(b"\n")  # JSON never holds a raw newline
    lines.pop()  # the empty piece after the last newline
    sha256 = hashlib.sha256
    return ["sha256:" + sha256(line).hexdigest() for line in lines]


def row_outputs(out: ModelOutput, n_rows: int, schema: Schema | None) -> list[dict[str, Any]]:
    """Each row's output: label and probabilities (by class name when the schema has as many
    classes), or value; empty dicts when the model answered none of them."""
    classes = [str(c) for c in schema.outputs.classes or []] if schema is not None else []
    labels = out.label.tolist() if out.label is not None else None
    probs: list[Any] | None = None
    if out.probabilities is not None:
        table = out.probabilities
        if table.ndim == 2 and len(table) and table.shape[1] == len(classes):
            # class by class: no list per row for the collector to track
            probs = [
                dict(zip(classes, p, strict=True)) for p in zip(*table.T.tolist(), strict=True)
            ]
        else:
            probs = table.tolist()
    if labels is not None and probs is not None:
        return [{"label": a, "probabilities": b} for a, b in zip(labels, probs, strict=True)]
    if labels is not None:
        return [{"label": a} for a in labels]
    if probs is not None:
        return [{"probabilities": b} for b in probs]
    if out.value is not None:
        return [{"value": v} for v in out.value.tolist()]
    return [{} for _ in range(n_rows)]


def _values_of_one_dtype(
    events: Sequence[PredictionEvent], names: Sequence[str]
) -> list[list[Any]] | None:
    """The field values from all columns' bytes at once; None unless every column of every
    event is a contiguous 1-D array of the same bool, int or float dtype (then joining per
    field would not change it, and its bytes read back as the same values).

    Only the first event's columns are checked to be 1-D: the plain join fails on a field whose
    arrays differ in dimensions, so any batch it could write passes that check as a whole. Each
    event's columns are taken to hold ``event.rows`` values, as validated columns do (only
    their total is checked).
    """
    width = len(names)
    if not width:
        return None
    arrays: list[npt.NDArray[Any]] = list(chain.from_iterable(map(_getter(names), events)))
    dtype = arrays[0].dtype
    if (
        dtype.kind not in _PLAIN_KINDS
        or list(map(_dtype_of, arrays)).count(dtype) != len(arrays)
        or list(map(_ndim_of, arrays[:width])).count(1) != width
    ):
        return None
    try:  # numpy's stubs declare ndarray's buffer protocol for Python 3.12+ only
        joined = b"".join(arrays)  # type: ignore[arg-type]
    except TypeError:  # a non-contiguous view has no plain buffer
        return None
    flat = np.frombuffer(joined, dtype=dtype)  # event by event, field by field, row by row
    counts = [e.rows for e in events]
    total = sum(counts)
    if flat.size != total * width:  # a 2-D column, or rows that do not match the columns
        return None
    if counts.count(counts[0]) == len(counts):
        blocks = flat.reshape(len(counts), width, counts[0])
        by_field = blocks.transpose(1, 0, 2).reshape(width, total)
    else:
        by_field = flat[_gather_index(counts, width)]
    values: list[list[Any]] = by_field.tolist()
    return values


def _getter(names: Sequence[str]) -> Callable[[PredictionEvent], Sequence[npt.NDArray[Any]]]:
    """A function from an event to its columns of ``names``, in that order, as a tuple."""
    if len(names) == 1:
        only = names[0]
        return lambda event: (event.columns[only],)
    take: Callable[[Columns], tuple[npt.NDArray[Any], ...]] = itemgetter(*names)
    return lambda event: take(event.columns)


def _gather_index(counts: Sequence[int], width: int) -> npt.NDArray[np.intp]:
    """Index ``[field, row]`` into the joined columns of events of ``counts`` rows: event
    ``k``'s block starts at ``width * first[k]`` and holds its fields one after another."""
    sizes = np.asarray(counts, dtype=np.intp)
    first = np.cumsum(sizes) - sizes  # each event's first row
    event = np.repeat(np.arange(len(sizes)), sizes)  # each row's event
    start = first[event] * (width - 1) + np.arange(int(sizes.sum()))  # its first field's value
    index: npt.NDArray[np.intp] = start + np.arange(width)[:, None] * sizes[event]
    return index


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> type[msgspec.Struct] | None:
    """A struct type encoding as an object with ``names`` as its keys, in that order."""
    if any(_UNRENAMEABLE.intersection(name) for name in names):
        return None
    fields = [f"_{i}" for i in range(len(names))]
    try:
        return msgspec.defstruct(
            "InputRow",
            [(field, Any) for field in fields],
            rename=dict(zip(fields, names, strict=True)),
            gc=False,  # short-lived and never in a cycle: nothing for the collector to find
        )
    except (TypeError, ValueError):  # a name msgspec will not take: rows stay dicts
        return None
