"""Human-readable and JSON views of a bundle, shared by ``build`` and ``inspect``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import MANIFEST_FILE
from rtserve.bundle.profile import Profile
from rtserve.bundle.schema import FieldSpec, MissingPolicy, OutputSpec, Schema, UnseenPolicy
from rtserve.cli.output import print_warning
from rtserve.errors import BundleError
from rtserve.types import Task

_Part = TypeVar("_Part")

#: Allowed values shown per field before the rest are counted.
SHOWN_ALLOWED = 6


def document(bundle: Bundle, shown_path: Path) -> dict[str, Any]:
    """The JSON view: ``Bundle.describe()`` plus a profile summary, located at ``shown_path``."""
    data = bundle.describe()
    data["path"] = str(shown_path)
    profile = _read_part(bundle.manifest.profile, bundle.read_profile)
    data["profile_summary"] = None if profile is None else profile_summary(profile)
    return data


def _read_part(name: str, read: Callable[[], _Part]) -> _Part | None:
    """A part of an unverified bundle (``inspect --no-verify``) may be corrupt: warn, go on."""
    try:
        return read()
    except (OSError, PydanticValidationError, BundleError) as exc:
        print_warning(f"{name}: unreadable ({type(exc).__name__}); the bundle is damaged")
        return None


def profile_summary(profile: Profile) -> dict[str, Any]:
    """Rows, per-feature kind and null rate, and the output distribution in brief."""
    outputs: dict[str, Any] = {"task": profile.outputs.task.value}
    if profile.outputs.class_frequencies:
        outputs["class_frequencies"] = profile.outputs.class_frequencies
    for key, numeric in (
        ("confidence", profile.outputs.confidence),
        ("value", profile.outputs.value),
    ):
        if numeric is not None:
            outputs[key] = {"mean": numeric.mean, "min": numeric.min, "max": numeric.max}
    return {
        "rows": profile.rows,
        "features": {
            name: {"kind": feature.kind, "null_rate": feature.null_rate}
            for name, feature in profile.features.items()
        },
        "outputs": outputs,
    }


def header(console: Console, bundle: Bundle) -> None:
    """Name, version, digest, creation time, runtime (with a pickle warning) and description."""
    manifest = bundle.manifest
    console.print(f"[bold]{escape(manifest.name)}[/] version [bold]{escape(manifest.version)}[/]")
    line(console, "digest", manifest.digest)
    line(console, "created", manifest.created_at.isoformat())
    runtime = f"{manifest.runtime.adapter} / {manifest.runtime.format}"
    if manifest.runtime.unsafe:
        runtime += (
            " [bold red](pickle: loading runs code from the bundle; it loads only with "
            f"--trust-pickle --pin-digest {manifest.digest})[/]"
        )
    line(console, "runtime", runtime, markup=True)
    if manifest.description:
        line(console, "description", manifest.description)


def line(console: Console, key: str, value: str, *, markup: bool = False) -> None:
    """``key        value`` on one unwrapped line (digests must stay copyable)."""
    console.print(f"{key:<12} {value if markup else escape(value)}", soft_wrap=True)


def environment(console: Console, bundle: Bundle) -> None:
    """Python and package versions recorded at build."""
    env = bundle.manifest.environment
    packages = ", ".join(f"{name} {version}" for name, version in env.packages.items())
    line(console, "environment", f"python {env.python}; {packages}")


def fields_table(schema: Schema) -> Table:
    """One row per input field: type, missing policy, constraints, PII flag."""
    table = Table(title=f"inputs (unknown fields: {schema.extra_fields})", title_justify="left")
    for column in ("field", "type", "missing", "allowed / bounds", "pii"):
        table.add_column(column, overflow="fold")
    for spec in schema.inputs:
        table.add_row(
            escape(spec.name),
            spec.type.value,
            _missing(spec),
            escape(_constraints(spec)),
            "[bold]yes[/]" if spec.pii else "",
        )
    return table


def outputs_line(outputs: OutputSpec) -> str:
    """``classification: classes 0, 1 (with probabilities)`` or ``regression: value``."""
    if outputs.task is Task.CLASSIFICATION:
        classes = ", ".join(str(c) for c in outputs.classes or [])
        proba = "with" if outputs.probabilities else "without"
        return f"classification: classes {classes} ({proba} probabilities)"
    width = "" if outputs.width == 1 else f" (width {outputs.width})"
    return f"regression: value{width}"


def profile_lines(console: Console, bundle: Bundle) -> None:
    """The profile and validation sample in one or two lines."""
    profile = _read_part(bundle.manifest.profile, bundle.read_profile)
    validation = _read_part(bundle.manifest.validation, bundle.read_validation)
    if profile is None or validation is None:
        return
    summary = profile_summary(profile)
    kinds = [f["kind"] for f in summary["features"].values()]
    text = (
        f"{summary['rows']} rows; {kinds.count('numeric')} numeric and "
        f"{kinds.count('categorical')} categorical features"
    )
    frequencies = summary["outputs"].get("class_frequencies")
    if frequencies:
        shares = ", ".join(f"{label}: {share:.0%}" for label, share in frequencies.items())
        text += f"; predicted classes {shares}"
    value = summary["outputs"].get("value")
    if value and value["mean"] is not None:
        text += f"; predicted value mean {value['mean']:.4g} (min {value['min']:.4g}, max {value['max']:.4g})"
    line(console, "profile", text)
    line(console, "validation", f"{validation.rows} rows with recorded outputs")


def files_table(bundle: Bundle) -> Table:
    """Every file of the bundle with its size."""
    table = Table(title="files", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    for relative in [MANIFEST_FILE, *bundle.manifest.files]:
        path = bundle.path / relative
        size = _size(path.stat().st_size) if path.is_file() else "missing"
        table.add_row(escape(relative), size)
    return table


def _missing(spec: FieldSpec) -> str:
    if spec.missing is MissingPolicy.IMPUTE:
        return f"impute {spec.impute!r}"
    return str(spec.missing.value)


def _constraints(spec: FieldSpec) -> str:
    parts: list[str] = []
    if spec.allowed is not None:
        shown = ", ".join(str(v) for v in spec.allowed[:SHOWN_ALLOWED])
        more = len(spec.allowed) - SHOWN_ALLOWED
        if more > 0:
            shown += f", … (+{more})"
        unseen = "others rejected" if spec.unseen is UnseenPolicy.REJECT else "others pass"
        parts.append(f"{{{shown}}} {unseen}")
    if spec.minimum is not None:
        parts.append(f">= {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"<= {spec.maximum:g}")
    return "; ".join(parts)


def _size(n_bytes: int) -> str:
    if n_bytes < 1024:
        return f"{n_bytes} B"
    size = n_bytes / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
