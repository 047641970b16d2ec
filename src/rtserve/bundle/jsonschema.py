"""An input schema as JSON Schema (draft 2020-12), for clients, docs and ``GET /v1/models/{name}``."""

from __future__ import annotations

from typing import Any

from rtserve.bundle.schema import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy

_JSON_TYPE = {
    FieldType.FLOAT: "number",
    FieldType.INT: "integer",
    FieldType.BOOL: "boolean",
    FieldType.STRING: "string",
}


def record_schema(schema: Schema) -> dict[str, Any]:
    """JSON Schema of one record (``{"field": value, ...}``) as the validator enforces it."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {spec.name: _field_schema(spec) for spec in schema.inputs},
        "required": [s.name for s in schema.inputs if s.missing is MissingPolicy.REJECT],
        "additionalProperties": schema.extra_fields != "reject",
    }


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    kind = _JSON_TYPE[spec.type]
    out: dict[str, Any] = {"type": kind if spec.missing is MissingPolicy.REJECT else [kind, "null"]}
    if spec.minimum is not None:
        out["minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if spec.allowed is not None:
        key = "enum" if spec.unseen is UnseenPolicy.REJECT else "examples"
        out[key] = list(spec.allowed)
    if spec.missing is MissingPolicy.IMPUTE:
        out["default"] = spec.impute
    if spec.pii:
        out["x-pii"] = True
    if spec.description:
        out["description"] = spec.description
    return out
