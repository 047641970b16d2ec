"""The bundle manifest (``rtserve.yaml``): a plain data model, read and written as YAML."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from rtserve.bundle.naming import check_name, check_version
from rtserve.bundle.policy import FallbackPolicy, OutputPolicy
from rtserve.bundle.schema import Schema
from rtserve.errors import BundleFormatError, IntegrityError, SchemaDefinitionError

MANIFEST_FILE = "rtserve.yaml"
FORMAT: Final = "rtserve.bundle/v1"
_DIGEST_LINE = re.compile(rb"^digest: sha256:([0-9a-f]{64})\s*$", re.MULTILINE)


class InputFrame(BaseModel):
    """How validated columns are laid out for a framework that wants a table or a matrix.

    ``kind: frame`` rebuilds a DataFrame with the training dtypes (needed by pipelines that select
    columns by name); ``kind: matrix`` stacks the columns into a 2-D float array.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["frame", "matrix"]
    dtypes: dict[str, str] = Field(default_factory=dict)
    #: Categories of pandas ``category`` columns, in their training order.
    categories: dict[str, list[Any]] = Field(default_factory=dict)
    #: Object columns whose missing values were ``None`` (not NaN) in training.
    none_nulls: list[str] = Field(default_factory=list)


class RuntimeSpec(BaseModel):
    """Which adapter loads the artifact, from which files, in which format."""

    model_config = ConfigDict(extra="forbid")

    adapter: str
    format: str
    files: list[str]
    #: True for pickle artifacts: loading runs code from the file and needs explicit trust.
    unsafe: bool = False
    options: dict[str, Any] = Field(default_factory=dict)


class Environment(BaseModel):
    """Interpreter and library versions at build time."""

    model_config = ConfigDict(extra="forbid")

    python: str
    packages: dict[str, str]
    #: The packages whose minor version must match for identical predictions.
    framework: list[str] = Field(default_factory=list)


class ExportParity(BaseModel):
    """How an export's outputs compared with the original model's at build time."""

    model_config = ConfigDict(extra="forbid")

    #: Sample rows compared (the validation sample's rows among them).
    rows: int
    #: Extra rows with a missing or unseen value put into one field at a time.
    probe_rows: int = 0
    #: Largest |difference| of probabilities / values; None when they could not be compared.
    max_abs_diff: float | None
    #: Share of compared rows whose label differs.
    label_mismatch_rate: float
    tolerance: float
    passed: bool


class Optimized(BaseModel):
    """The ONNX export kept beside the native artifact, its parity, and which runtime serves."""

    model_config = ConfigDict(extra="forbid")

    #: ``onnx`` when the export passed its parity gate, else ``native``.
    serving: Literal["onnx", "native"]
    #: Why the native runtime serves (or a note on the export); empty when ONNX serves.
    reason: str = ""
    #: The export's artifact; None when there is none (not convertible or rejected).
    runtime: RuntimeSpec | None = None
    #: How validated columns are fed to the export.
    input_frame: InputFrame | None = None
    parity: ExportParity | None = None
    #: Converter and runtime versions that made and checked the export.
    packages: dict[str, str] = Field(default_factory=dict)


class Manifest(BaseModel):
    """Everything needed to load, check and describe a bundle."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: Literal["rtserve.bundle/v1"] = FORMAT
    name: str
    version: str
    description: str = ""
    created_at: datetime
    model_schema: Schema = Field(alias="schema")
    input_frame: InputFrame
    runtime: RuntimeSpec
    #: An ONNX export and its parity gate (None: the bundle predates exports or is ONNX).
    optimized: Optimized | None = None
    environment: Environment
    profile: str = "profile.json"
    validation: str = "validation.json"
    #: What to answer when the model fails (None: failures surface as errors).
    fallback: FallbackPolicy | None = None
    #: Output hardening: rounding of probabilities, top-k.
    output: OutputPolicy | None = None
    #: sha256 of every file of the bundle except this manifest, keyed by relative path.
    files: dict[str, str]
    #: sha256 over this manifest's content without this field; identifies the bundle.
    digest: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("version")
    @classmethod
    def _valid_version(cls, value: str) -> str:
        return check_version(value)

    @model_serializer(mode="wrap")
    def _omit_absent_policies(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Bundles without serving policies keep the content (and digest) they had before the
        # policies existed.
        data: dict[str, Any] = handler(self)
        for key in ("fallback", "output"):
            if data.get(key, 0) is None:
                del data[key]
        return data

    def to_yaml(self) -> str:
        """Deterministic YAML text (keys in model order)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    def write(self, directory: Path) -> None:
        """Write ``rtserve.yaml`` into ``directory``."""
        (directory / MANIFEST_FILE).write_text(self.to_yaml(), encoding="utf-8")


def read_manifest(directory: Path) -> Manifest:
    """Parse ``rtserve.yaml``; every failure says what is wrong with which key."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise BundleFormatError(
            f"{directory}: no {MANIFEST_FILE} found; is this an rtserve bundle? "
            "(build one with `rtserve build` or rtserve.build())",
            field=MANIFEST_FILE,
        )
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        # rtserve itself always writes valid UTF-8 YAML, so an unreadable manifest means its
        # bytes changed after the build: an integrity failure, like a changed byte elsewhere.
        recorded = _DIGEST_LINE.search(raw)
        raise IntegrityError(
            MANIFEST_FILE,
            recorded.group(1).decode("ascii") if recorded else "<unknown>",
            "<unreadable>",
            hint=f"it is no longer valid UTF-8 YAML: {exc}; restore the bundle from its source "
            "or rebuild it",
        ) from exc
    if not isinstance(data, dict):
        raise BundleFormatError(f"{MANIFEST_FILE}: expected a mapping at the top level")
    if data.get("format") != FORMAT:
        raise BundleFormatError(
            f"{MANIFEST_FILE}: format {data.get('format')!r} is not {FORMAT!r}; this bundle was "
            "made by another tool or another major version of rtserve",
            field="format",
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BundleFormatError(f"{MANIFEST_FILE}: {problems}") from exc
    except SchemaDefinitionError:
        raise
