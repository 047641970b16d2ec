"""The bundle manifest (``rtserve.yaml``): a plain data model, read and written as YAML."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event
from yaml.nodes import Node, ScalarNode
from yaml.resolver import Resolver

from rtserve.bundle.naming import check_name, check_version
from rtserve.bundle.paths import check_relative, read_bounded
from rtserve.bundle.policy import FallbackPolicy, OutputPolicy
from rtserve.bundle.schema import Schema
from rtserve.errors import (
    BundleFormatError,
    BundleTooLargeError,
    IntegrityError,
    SchemaDefinitionError,
)

MANIFEST_FILE = "rtserve.yaml"
FORMAT: Final = "rtserve.bundle/v1"
_DIGEST_LINE = re.compile(rb"^digest: sha256:([0-9a-f]{64})\s*$", re.MULTILINE)

#: Largest manifest read at all (a real one, even with a wide schema, is a few hundred KiB).
MAX_MANIFEST_BYTES = 8 << 20
#: Most YAML nodes (scalars, lists, mappings) in a manifest: parsing time grows with this count.
MAX_MANIFEST_NODES = 500_000
#: Deepest nesting of lists and mappings in a manifest.
MAX_MANIFEST_DEPTH = 64


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
    #: Size in bytes of every file, keyed like ``files``; bounds what unpacking an archive may
    #: write. None in bundles sealed before sizes were recorded (they keep their digest).
    sizes: dict[str, Annotated[int, Field(ge=0)]] | None = None
    #: A short sha256 of each section fixed at build (identity, environment, runtime, files...),
    #: so that ``rtserve reseal`` can accept a schema edit and refuse any other. None in bundles
    #: sealed before it was recorded.
    sealed_sections: dict[str, str] | None = None
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

    @model_validator(mode="after")
    def _paths_stay_inside_the_bundle(self) -> Manifest:
        # Every path the manifest names is refused here, before any file is opened through it.
        check_relative(self.profile, field="profile")
        check_relative(self.validation, field="validation")
        for path in self.runtime.files:
            check_relative(path, field="runtime.files")
        if self.optimized is not None and self.optimized.runtime is not None:
            for path in self.optimized.runtime.files:
                check_relative(path, field="optimized.runtime.files")
        for path in self.files:
            check_relative(path, field="files")
        if self.sizes is not None and set(self.sizes) != set(self.files):
            odd = sorted(set(self.sizes) ^ set(self.files))[0]
            raise BundleFormatError(
                f"{MANIFEST_FILE}: sizes and files must list the same paths, but {odd!r} is in "
                "only one of them; the manifest was edited by hand: rebuild the bundle",
                field="sizes",
            )
        return self

    def named_paths(self) -> dict[str, list[str]]:
        """Every file path the manifest names outside ``files``, by manifest key."""
        named = {
            "profile": [self.profile],
            "validation": [self.validation],
            "runtime.files": list(self.runtime.files),
        }
        if self.optimized is not None and self.optimized.runtime is not None:
            named["optimized.runtime.files"] = list(self.optimized.runtime.files)
        return named

    @model_serializer(mode="wrap")
    def _omit_absent_policies(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Bundles without serving policies (or recorded sizes and sections) keep the content (and
        # digest) they had before those keys existed.
        data: dict[str, Any] = handler(self)
        for key in ("fallback", "output", "sizes", "sealed_sections"):
            if data.get(key, 0) is None:
                del data[key]
        return data

    def to_yaml(self) -> str:
        """Deterministic YAML text (keys in model order)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100)

    def write(self, directory: Path) -> None:
        """Write ``rtserve.yaml`` into ``directory``."""
        (directory / MANIFEST_FILE).write_text(self.to_yaml(), encoding="utf-8")


def read_manifest(directory: Path) -> Manifest:
    """Parse ``rtserve.yaml``; every failure says what is wrong with which key.

    The file is read only if it is a regular file of at most ``MAX_MANIFEST_BYTES`` (not a link).
    """
    path = directory / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        raise BundleFormatError(
            f"{directory}: no {MANIFEST_FILE} found; is this an rtserve bundle? "
            "(build one with `rtserve build` or rtserve.build())",
            field=MANIFEST_FILE,
        )
    raw = read_bounded(directory, MANIFEST_FILE, field=MANIFEST_FILE, limit=MAX_MANIFEST_BYTES)
    return parse_manifest(raw)


def parse_manifest(raw: bytes) -> Manifest:
    """Parse the bytes of ``rtserve.yaml`` with every cost bounded.

    YAML aliases are refused before anything expands them (a few KiB of nested aliases unfold
    into gigabytes), and the size, node count and nesting depth are capped.

    Raises:
        BundleTooLargeError: over ``MAX_MANIFEST_BYTES``, ``MAX_MANIFEST_NODES`` or
            ``MAX_MANIFEST_DEPTH``.
        BundleFormatError: an alias, a non-mapping document, another format, or a key that
            breaks the manifest's rules.
        IntegrityError: the bytes are not UTF-8 YAML (rtserve never writes such a manifest).
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleTooLargeError(
            f"{MANIFEST_FILE} is {len(raw)} bytes, over the limit of {MAX_MANIFEST_BYTES}; "
            "rtserve never writes one this large, so rebuild the bundle with rtserve.build",
            field=MANIFEST_FILE,
        )
    try:
        loader = _ManifestLoader(raw.decode("utf-8"))
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        # rtserve itself always writes valid UTF-8 YAML, so an unreadable manifest means its
        # bytes changed after the build: an integrity failure, like a changed byte elsewhere.
        recorded = _DIGEST_LINE.search(raw)
        raise IntegrityError(
            MANIFEST_FILE,
            recorded.group(1).decode("ascii") if recorded else "<unknown>",
            "<unreadable>",
            hint=f"it is no longer valid UTF-8 YAML ({_yaml_problem(exc)}); restore the bundle "
            "from its source or rebuild it",
        ) from None
    if not isinstance(data, dict):
        raise BundleFormatError(f"{MANIFEST_FILE}: expected a mapping at the top level")
    if data.get("format") != FORMAT:
        shown = data.get("format")
        raise BundleFormatError(
            f"{MANIFEST_FILE}: format {str(shown)[:80]!r} is not {FORMAT!r}; this bundle was "
            "made by another tool or another major version of rtserve",
            field="format",
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BundleFormatError(f"{MANIFEST_FILE}: {problems}") from None
    except SchemaDefinitionError:
        raise


def _yaml_problem(exc: Exception) -> str:
    """Where and what, never the offending text (a YAML error's snippet quotes the file)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.start} is not UTF-8"
    return type(exc).__name__


class _BoundedComposer(Composer):
    """PyYAML's composer with aliases refused and the node count and depth capped.

    Aliases are refused at the event, before the composer could share (and the constructor
    expand) the node they point to; that closes the "billion laughs" bomb for good.
    """

    def __init__(self) -> None:
        super().__init__()
        self._nodes = 0
        self._keys: list[str] = []

    def _where(self) -> str:
        return ".".join(key for key in self._keys if key) or MANIFEST_FILE

    if TYPE_CHECKING:  # provided by the parser this composer is mixed with

        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Event | None: ...

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose one node after checking it is no alias and within the budget."""
        key: object = index  # a mapping value's key node, a list position, or None
        if isinstance(key, ScalarNode):
            self._keys.append(str(key.value))
        elif isinstance(key, int):
            self._keys.append(str(key))
        else:  # a mapping key, or the document itself
            self._keys.append("")
        try:
            self._check_next()
            return super().compose_node(parent, index)
        finally:
            self._keys.pop()

    def _check_next(self) -> None:
        """Refuse an alias, and a node past the count or depth budget, before composing it."""
        if self.check_event(AliasEvent):
            event = self.peek_event()
            mark = event.start_mark if event is not None else None
            line = mark.line + 1 if mark is not None else "?"
            anchor = str(getattr(event, "anchor", ""))[:40]
            where = self._where()
            raise BundleFormatError(
                f"{MANIFEST_FILE} line {line}: {where} is a YAML alias (*{anchor}); rtserve "
                "never writes aliases, which let a small file expand into a huge one, so they "
                "are refused: write the value out in full",
                field=where,
            )
        self._nodes += 1
        if self._nodes > MAX_MANIFEST_NODES:
            raise BundleTooLargeError(
                f"{MANIFEST_FILE} holds more than {MAX_MANIFEST_NODES} YAML values; rtserve "
                "never writes one this large, so rebuild the bundle with rtserve.build",
                field=MANIFEST_FILE,
            )
        if len(self._keys) > MAX_MANIFEST_DEPTH:
            raise BundleTooLargeError(
                f"{MANIFEST_FILE}: {self._where()[:200]} nests deeper than "
                f"{MAX_MANIFEST_DEPTH} levels; rtserve never writes such a manifest, so rebuild "
                "the bundle with rtserve.build",
                field=MANIFEST_FILE,
            )


try:  # libyaml parses events in C; the composer stays ours (and so do its checks)
    from yaml._yaml import CParser as _Parser

    class _ManifestLoader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
        """Safe YAML with aliases refused and every cost capped."""

        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _ManifestLoader(  # type: ignore[no-redef]
        _BoundedComposer, Reader, Scanner, Parser, SafeConstructor, Resolver
    ):
        """Safe YAML with aliases refused and every cost capped (pure-Python parser)."""

        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


class _PlainDumper(yaml.SafeDumper):
    """Writes every value out in full: a manifest with aliases would be refused when read."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never emit an anchor or alias."""
        return True
