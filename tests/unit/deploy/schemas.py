"""Validators for the generated files, built from the vendored published schemas (fixtures/deploy)."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

FIXTURES = Path(__file__).parents[2] / "fixtures" / "deploy"
#: Kubernetes versions kubernetes-validate ships schemas for: the oldest we support and the newest.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")


def _read(name: str) -> str:
    return gzip.decompress((FIXTURES / name).read_bytes()).decode("utf-8")


def _strict(schema: Any) -> Any:
    """Unknown fields fail, as with the API server's strict field validation."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


@cache
def crd_validator(file_name: str, version: str) -> jsonschema.Draft7Validator:
    """The strict validator of one served version of a vendored CRD."""
    crd = yaml.safe_load(_read(file_name))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(served["schema"]["openAPIV3Schema"])
    # `metadata` is validated by the API server itself, not by the CRD: accept any ObjectMeta.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def crd_errors(document: dict[str, Any], file_name: str, version: str) -> list[str]:
    """Every violation of the CRD's schema in ``document`` (empty: valid)."""
    validator = crd_validator(file_name, version)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _shape_schema(shape: dict[str, Any]) -> dict[str, Any]:
    kind = shape["type"]
    if kind == "structure":
        members = shape.get("members", {})
        return {
            "type": "object",
            "properties": {k: {"$ref": f"#/$defs/{m['shape']}"} for k, m in members.items()},
            "required": shape.get("required", []),
            "additionalProperties": False,
        }
    if kind == "list":
        return {"type": "array", "items": {"$ref": f"#/$defs/{shape['member']['shape']}"}}
    if kind == "map":
        return {
            "type": "object",
            "additionalProperties": {"$ref": f"#/$defs/{shape['value']['shape']}"},
        }
    if kind == "string":
        return {"type": "string"} | ({"enum": shape["enum"]} if "enum" in shape else {})
    if kind in ("integer", "long"):
        bounds = {"minimum": shape["min"]} if "min" in shape else {}
        return {"type": "integer"} | bounds | ({"maximum": shape["max"]} if "max" in shape else {})
    if kind == "boolean":
        return {"type": "boolean"}
    if kind in ("double", "float"):
        return {"type": "number"}
    return {}  # timestamp, blob: not in a task definition request


@cache
def ecs_validator() -> jsonschema.Draft202012Validator:
    """``RegisterTaskDefinitionRequest`` of the vendored botocore ECS model, as a JSON Schema."""
    shapes = json.loads(_read("ecs-2014-11-13-service-2.json.gz"))["shapes"]
    schema = {
        "$ref": "#/$defs/RegisterTaskDefinitionRequest",
        "$defs": {name: _shape_schema(shape) for name, shape in shapes.items()},
    }
    return jsonschema.Draft202012Validator(schema)


def ecs_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the ECS API model in ``document`` (empty: valid)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in ecs_validator().iter_errors(document)
    ]
