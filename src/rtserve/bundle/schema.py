"""The input/output contract of a model: field specs, inference from a sample, and their checks."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, model_validator
from pydantic import ValidationError as PydanticValidationError

from rtserve.errors import SchemaDefinitionError
from rtserve.types import Task

#: Categorical fields with more distinct values than this in the sample are treated as free text.
MAX_INFERRED_CATEGORIES = 200

_FIELD_NAME = re.compile(r"^[^\x00-\x1f]{1,256}$")


class FieldType(StrEnum):
    """Logical type of an input field (what a client sends, not how the model stores it)."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


class MissingPolicy(StrEnum):
    """What happens when a field is absent or null."""

    REJECT = "reject"  # the request is refused with a 422 naming the field
    PASS = "pass"  # noqa: S105 - a policy name, not a password; the model gets NaN / None
    IMPUTE = "impute"  # the declared constant ``impute`` replaces it before the model sees it


class UnseenPolicy(StrEnum):
    """What happens when a categorical field carries a value outside ``allowed``."""

    REJECT = "reject"  # the request is refused with a 422 naming the field
    PASS = "pass"  # noqa: S105 - a policy name, not a password; the model sees the new value


class FieldSpec(BaseModel):
    """One input field: type, missing-value policy, declared constraints and a PII flag.

    Bounds and allowed values are enforced only where declared; ranges merely observed in training
    belong to the profile, not here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: FieldType
    missing: MissingPolicy = MissingPolicy.REJECT
    impute: float | int | bool | str | None = None
    allowed: list[str] | list[int] | None = None
    unseen: UnseenPolicy = UnseenPolicy.PASS
    minimum: float | None = None
    maximum: float | None = None
    pii: bool = False
    description: str = ""

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: ModelWrapValidatorHandler[FieldSpec]) -> FieldSpec:
        try:
            return handler(data)
        except PydanticValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            where = f"input field {name!r}" if isinstance(name, str) else "an input field"
            raise SchemaDefinitionError(
                f"{where}: {_explain(exc)}", field=name if isinstance(name, str) else None
            ) from exc

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        where = f"input field {self.name!r}"
        if not _FIELD_NAME.match(self.name):
            raise SchemaDefinitionError(
                f"{where}: a name must be 1-256 printable characters", field=self.name
            )
        if self.missing is MissingPolicy.IMPUTE:
            if self.impute is None:
                raise SchemaDefinitionError(
                    f"{where}: missing: impute needs an `impute` value; set one or use "
                    "missing: pass / reject",
                    field=self.name,
                )
            if not _value_has_type(self.impute, self.type):
                raise SchemaDefinitionError(
                    f"{where}: impute value {self.impute!r} is not "
                    f"{'an' if self.type is FieldType.INT else 'a'} {self.type.value}",
                    field=self.name,
                )
        elif self.impute is not None:
            raise SchemaDefinitionError(
                f"{where}: `impute` is set but missing is {self.missing.value!r}; "
                "set missing: impute or remove the value",
                field=self.name,
            )
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            FieldType.FLOAT,
            FieldType.INT,
        ):
            raise SchemaDefinitionError(
                f"{where}: minimum/maximum apply to numeric fields, not {self.type.value}",
                field=self.name,
            )
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SchemaDefinitionError(
                f"{where}: minimum {self.minimum} is greater than maximum {self.maximum}",
                field=self.name,
            )
        if self.allowed is not None:
            if self.type not in (FieldType.STRING, FieldType.INT):
                raise SchemaDefinitionError(
                    f"{where}: allowed values apply to string or int fields, not {self.type.value}",
                    field=self.name,
                )
            bad = [v for v in self.allowed if not _value_has_type(v, self.type)]
            if bad:
                raise SchemaDefinitionError(
                    f"{where}: allowed values {bad[:5]!r} are not of type {self.type.value}",
                    field=self.name,
                )
        if self.unseen is UnseenPolicy.REJECT and self.allowed is None:
            raise SchemaDefinitionError(
                f"{where}: unseen: reject needs a list of allowed values",
                field=self.name,
            )
        return self


class OutputSpec(BaseModel):
    """What the model answers: a label and per-class probabilities, or a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task
    classes: list[str] | list[int] | list[bool] | list[float] | None = None
    #: Number of values per row for regressors (1 = a scalar per row).
    width: int = Field(default=1, ge=1)
    #: Whether the classifier also yields probabilities.
    probabilities: bool = True

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: ModelWrapValidatorHandler[OutputSpec]) -> OutputSpec:
        try:
            return handler(data)
        except PydanticValidationError as exc:
            raise SchemaDefinitionError(f"outputs: {_explain(exc)}", field="outputs") from exc

    @model_validator(mode="after")
    def _consistent(self) -> OutputSpec:
        if self.task is Task.CLASSIFICATION and not self.classes:
            raise SchemaDefinitionError("outputs: a classifier needs its list of classes")
        return self


class Schema(BaseModel):
    """Input fields in the model's column order, plus the output description."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[FieldSpec]
    outputs: OutputSpec
    #: What to do with record keys that are not schema fields (a typo would otherwise pass
    #: silently as a missing value).
    extra_fields: Literal["reject", "ignore"] = "reject"

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Schema]) -> Schema:
        try:
            return handler(data)
        except PydanticValidationError as exc:
            first = exc.errors()[0]["loc"]
            raise SchemaDefinitionError(
                f"schema: {_explain(exc)}", field=str(first[0]) if first else None
            ) from exc

    @model_validator(mode="after")
    def _unique(self) -> Schema:
        if not self.inputs:
            raise SchemaDefinitionError("inputs: a schema needs at least one input field")
        seen: set[str] = set()
        for spec in self.inputs:
            if spec.name in seen:
                raise SchemaDefinitionError(
                    f"inputs: field {spec.name!r} is declared twice", field=spec.name
                )
            seen.add(spec.name)
        return self

    @property
    def field_names(self) -> list[str]:
        """Input field names in column order."""
        return [spec.name for spec in self.inputs]

    def field(self, name: str) -> FieldSpec:
        """The spec of one input field."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def all_numeric(self) -> bool:
        """True when every input is a number or bool, so a single [N, F] tensor can carry them."""
        return all(spec.type is not FieldType.STRING for spec in self.inputs)

    @property
    def pii_fields(self) -> frozenset[str]:
        """Names of fields flagged as personal data."""
        return frozenset(spec.name for spec in self.inputs if spec.pii)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> Schema:
        """A copy with per-field attributes replaced, e.g. ``{"amount": {"minimum": 0}}``."""
        unknown = sorted(set(overrides) - set(self.field_names))
        if unknown:
            raise SchemaDefinitionError(
                f"schema overrides name unknown field(s) {unknown}; fields are {self.field_names}",
                field=unknown[0],
            )
        inputs = []
        for spec in self.inputs:
            change = overrides.get(spec.name)
            if change:
                data = spec.model_dump()
                data.update(change)
                inputs.append(FieldSpec.model_validate(data))
            else:
                inputs.append(spec)
        return self.model_copy(update={"inputs": inputs})


def _explain(exc: PydanticValidationError) -> str:
    """pydantic's complaints as one sentence: ``key: what is wrong (got value)``."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "value"
        shown = repr(err["input"])
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        got = f" (got {shown})" if err["type"] != "missing" else ""
        parts.append(f"{where}: {err['msg']}{got}")
    return "; ".join(parts)


def _value_has_type(value: object, field_type: FieldType) -> bool:
    if field_type is FieldType.FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if field_type is FieldType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if field_type is FieldType.BOOL:
        return isinstance(value, bool)
    return isinstance(value, str)
