"""How a tabular model looks on the Open Inference Protocol: tensors to fields, outputs to tensors.

- inputs: a model whose fields are all numeric advertises ONE input ``"input"``, ``FP64``,
  ``[-1, F]`` (columns in schema order), so generic clients work from the metadata alone; it also
  accepts one input per field. Other models take one input per field, shape ``[N]`` or ``[N, 1]``
  (strings as ``BYTES``).
- outputs: classifiers answer ``label`` (``[N]``; BYTES, INT64, BOOL or FP64 after the type of the
  classes) and ``probabilities`` (``FP64 [N, C]``, columns in the order of the classes);
  regressors answer ``value`` (``FP64 [N]``, or ``[N, W]`` for W values per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rtserve.bundle.schema import FieldType, OutputSpec, Schema
from rtserve.errors import MalformedRequestError
from rtserve.protocol.v2.types import (
    NUMPY_DTYPES,
    InferRequest,
    InputTensor,
    OutputTensor,
    PredictionsLike,
    RequestedOutput,
)
from rtserve.types import AnyArray, Task

#: Name of the single ``[N, F]`` input that all-numeric models advertise.
MATRIX_INPUT = "input"
_FIELD_DATATYPE = {
    FieldType.FLOAT: "FP64",
    FieldType.INT: "INT64",
    FieldType.BOOL: "BOOL",
    FieldType.STRING: "BYTES",
}


# --- tensors <-> schema fields ---------------------------------------------------------------


def columns_from_inputs(request: InferRequest, schema: Schema) -> dict[str, AnyArray | list[Any]]:
    """Map input tensors to schema fields, for ``Validator.columns``.

    Either one input per field (shape ``[N]`` or ``[N, 1]``), or, for all-numeric schemas, a
    single ``[N, F]`` input of any name whose columns are the fields in schema order. Fields
    without an input are left out (the validator applies their missing-value policy).
    """
    fields = {spec.name: spec.type for spec in schema.inputs}
    names = list(fields)
    inputs = request.inputs
    if schema.all_numeric and len(inputs) == 1:
        only = inputs[0]
        if only.data.ndim == 2 and (only.name not in fields or only.shape[1] == len(names)):
            return _matrix_columns(only, fields)
    unknown = [tensor.name for tensor in inputs if tensor.name not in fields]
    if unknown:
        raise MalformedRequestError(
            f"inputs: {unknown} {'is' if len(unknown) == 1 else 'are'} not input(s) of this model; "
            f"{_expected_inputs(schema, names)}",
            field=f"inputs[{[t.name for t in inputs].index(unknown[0])}].name",
        )
    columns: dict[str, AnyArray | list[Any]] = {}
    rows: dict[str, int] = {}
    for i, tensor in enumerate(inputs):
        data = tensor.data
        if data.ndim == 2 and data.shape[1] == 1:
            data = data.reshape(-1)
        if data.ndim != 1:
            raise MalformedRequestError(
                f"inputs[{i}].shape: input {tensor.name!r} has shape {list(tensor.shape)}; a field "
                f"takes one value per row, shape [N] or [N, 1]. {_expected_inputs(schema, names)}",
                field=f"inputs[{i}].shape",
            )
        rows[tensor.name] = len(data)
        columns[tensor.name] = _column(data, fields[tensor.name])
    if len(set(rows.values())) > 1:
        raise MalformedRequestError(
            f"inputs: the inputs hold different numbers of rows {rows}; every field needs one "
            "value per row",
            field="inputs",
        )
    return columns


def _matrix_columns(
    tensor: InputTensor, fields: dict[str, FieldType]
) -> dict[str, AnyArray | list[Any]]:
    names = list(fields)
    if tensor.shape[1] != len(names):
        raise MalformedRequestError(
            f"inputs[0].shape: input {tensor.name!r} has shape {list(tensor.shape)} but this model "
            f"has {len(names)} fields ({', '.join(names)}); send shape [N, {len(names)}] with "
            "the columns in that order",
            field="inputs[0].shape",
        )
    if tensor.datatype == "BYTES":
        raise MalformedRequestError(
            f"inputs[0].datatype: input {tensor.name!r} is BYTES but this model's fields are "
            "numeric; send FP64 (or another numeric datatype)",
            field="inputs[0].datatype",
        )
    return {name: _column(tensor.data[:, j], fields[name]) for j, name in enumerate(names)}


def _column(data: AnyArray, field_type: FieldType) -> AnyArray | list[Any]:
    """One field's values, converted only where the conversion is exact."""
    kind = data.dtype.kind
    if kind == "O":
        return list(data.tolist())
    if field_type is FieldType.BOOL and kind in "iuf":
        return _bools(data)
    if field_type is FieldType.INT and kind == "f" and data.size:
        with np.errstate(invalid="ignore"):
            exact = bool(np.all(np.isfinite(data)) and np.all(np.trunc(data) == data))
            if exact and float(np.max(np.abs(data))) < 2.0**63:
                return data.astype(np.int64)
    return data


def _bools(data: AnyArray) -> AnyArray | list[Any]:
    """0/1 (and NaN for missing) from a numeric tensor as booleans; anything else untouched."""
    missing = np.isnan(data) if data.dtype.kind == "f" else np.zeros(data.shape, dtype=bool)
    present = data[~missing]
    if not np.all((present == 0) | (present == 1)):
        return data
    if missing.any():
        return [
            None if m else bool(v) for v, m in zip(data.tolist(), missing.tolist(), strict=True)
        ]
    return data.astype(bool)


def _expected_inputs(schema: Schema, names: list[str]) -> str:
    per_field = f"this model takes one input per field, named {', '.join(names)}"
    if schema.all_numeric:
        return (
            f"{per_field}, or a single [N, {len(names)}] tensor (e.g. {MATRIX_INPUT!r}) with "
            "those columns in that order"
        )
    return per_field + " (strings as BYTES), each of shape [N] or [N, 1]"


def input_metadata(schema: Schema) -> list[dict[str, Any]]:
    """The ``inputs`` of the model metadata (one ``[-1, F]`` tensor when all fields are numeric)."""
    if schema.all_numeric:
        return [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(schema.inputs)]}]
    return [
        {"name": spec.name, "datatype": _FIELD_DATATYPE[spec.type], "shape": [-1]}
        for spec in schema.inputs
    ]


# --- outputs ---------------------------------------------------------------------------------


def output_tensors(predictions: PredictionsLike) -> list[OutputTensor]:
    """The named output tensors of a batch of predictions (see the module docstring)."""
    spec = predictions.spec
    if spec.task is Task.CLASSIFICATION:
        label = np.asarray(predictions.label)
        datatype = _label_datatype(spec)
        if datatype == "BYTES":
            data = np.empty(label.shape[0], dtype=object)
            data[:] = [v if type(v) is str else str(v) for v in label.tolist()]
        else:
            data = label.astype(NUMPY_DTYPES[datatype])
        out = [OutputTensor("label", datatype, (label.shape[0],), data)]
        if predictions.probabilities is not None:
            proba = np.asarray(predictions.probabilities, dtype=np.float64)
            out.append(OutputTensor("probabilities", "FP64", tuple(proba.shape), proba))
        return out
    value = np.asarray(predictions.value, dtype=np.float64)
    value = value.reshape(value.shape[0], -1) if spec.width > 1 else value.reshape(-1)
    return [OutputTensor("value", "FP64", tuple(value.shape), value)]


def output_metadata(schema: Schema) -> list[dict[str, Any]]:
    """The ``outputs`` of the model metadata: the tensors ``output_tensors`` produces."""
    spec = schema.outputs
    if spec.task is Task.CLASSIFICATION:
        out = [{"name": "label", "datatype": _label_datatype(spec), "shape": [-1]}]
        if spec.probabilities:
            out.append(
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [-1, len(spec.classes or [])],
                }
            )
        return out
    return [
        {
            "name": "value",
            "datatype": "FP64",
            "shape": [-1] if spec.width == 1 else [-1, spec.width],
        }
    ]


def _label_datatype(spec: OutputSpec) -> str:
    first = spec.classes[0] if spec.classes else None
    if isinstance(first, (bool, np.bool_)):
        return "BOOL"
    if isinstance(first, (int, np.integer)):
        return "INT64"
    if isinstance(first, (float, np.floating)):
        return "FP64"
    return "BYTES"


def check_requested_outputs(request: InferRequest, schema: Schema) -> None:
    """Refuse requested outputs the model does not have, before any prediction runs."""
    check_output_names(request.outputs, [entry["name"] for entry in output_metadata(schema)])


def check_output_names(requested: Sequence[RequestedOutput] | None, available: list[str]) -> None:
    """Raise ``MalformedRequestError`` naming requested outputs that are not in ``available``."""
    if requested is None:
        return
    unknown = [r.name for r in requested if r.name not in available]
    if unknown:
        index = [r.name for r in requested].index(unknown[0])
        raise MalformedRequestError(
            f"outputs: {unknown} {'is' if len(unknown) == 1 else 'are'} not output(s) of this "
            f"model; it answers {', '.join(available)} (omit outputs to get all of them)",
            field=f"outputs[{index}].name",
        )
