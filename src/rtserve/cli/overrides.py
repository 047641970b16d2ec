"""Schema overrides from the command line: ``--set FIELD.ATTR=VALUE`` and a YAML file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from rtserve.bundle.schema import FieldSpec
from rtserve.errors import SchemaDefinitionError

Overrides = dict[str, dict[str, Any]]

_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

#: Attributes of a field that an override may set (the name is the key, not an attribute).
ATTRIBUTES = tuple(name for name in FieldSpec.model_fields if name != "name")


def parse_set(assignments: list[str]) -> Overrides:
    """``["amount.minimum=0", "email.pii=true"]`` -> ``{"amount": {"minimum": 0}, ...}``.

    Values are YAML scalars or lists (``0``, ``true``, ``[DE, FR]``); an empty value is null,
    which removes a declared bound. A malformed assignment is a usage error (exit 2).
    """
    overrides: Overrides = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        field, dot, attribute = key.rpartition(".")
        if not sep or not dot or not field:
            raise typer.BadParameter(
                f"{assignment!r} is not FIELD.ATTR=VALUE (e.g. amount.minimum=0)",
                param_hint="--set",
            )
        if problem := _attribute_problem(attribute):
            raise typer.BadParameter(f"{assignment!r}: {problem}", param_hint="--set")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(
                f"{assignment!r}: the value {raw!r} is not a YAML scalar or list ({exc})",
                param_hint="--set",
            ) from exc
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
            value = float(value)  # YAML 1.1 reads "1e4" as text; on a command line it is a number
        overrides.setdefault(field, {})[attribute] = value
    return overrides


def read_file(path: Path) -> Overrides:
    """A YAML file ``{field: {attr: value}}``; wrong content fails with the file named (exit 1)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SchemaDefinitionError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SchemaDefinitionError(
            f"{path}: expected a mapping of field -> {{attribute: value}}, e.g. "
            "'amount: {minimum: 0}'"
        )
    overrides: Overrides = {}
    for field, change in data.items():
        for attribute, value in change.items():
            if problem := _attribute_problem(str(attribute)):
                raise SchemaDefinitionError(f"{path}: {field}: {problem}", field=str(field))
            overrides.setdefault(str(field), {})[str(attribute)] = value
    return overrides


def merge(base: Overrides, top: Overrides) -> Overrides:
    """``top`` wins attribute by attribute (command line over file)."""
    merged = {field: dict(change) for field, change in base.items()}
    for field, change in top.items():
        merged.setdefault(field, {}).update(change)
    return merged


def _attribute_problem(attribute: str) -> str | None:
    if attribute in ATTRIBUTES:
        return None
    return f"{attribute!r} is not a field attribute; use one of {', '.join(ATTRIBUTES)}"
