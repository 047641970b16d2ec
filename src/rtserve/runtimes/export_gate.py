"""The parity gate: an ONNX export serves only if it answers like the original model.

Original and export predict the same sample rows (the validation sample among them) and probe
rows that put a missing or an unseen value into one field at a time, because the validation
sample alone may hold no such row. The export is accepted only if every probability / value is
within the tolerance, no label differs, and both fail or both answer on every probe.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtserve.bundle.manifest import ExportParity, Optimized, RuntimeSpec
from rtserve.bundle.sample import sample_rows, take
from rtserve.bundle.schema import FieldType, MissingPolicy, Schema, UnseenPolicy
from rtserve.errors import UnsupportedModelError
from rtserve.runtimes.base import Description, ModelOutput, Runtime, RuntimeAdapter, Trust
from rtserve.runtimes.convert import Export, exports
from rtserve.runtimes.onnx import OnnxAdapter
from rtserve.types import AnyArray, Columns

#: Probabilities / values of the export may differ from the original's by at most this much.
#: Exports compute in double precision where skl2onnx allows it; float32 outputs of tree
#: ensembles differ by ~1e-7, a flipped split by far more than this.
DEFAULT_TOLERANCE = 1e-5
OPTIMIZED_DIR = "optimized"
OPTIMIZED_FILE = f"{OPTIMIZED_DIR}/model.onnx"
#: Sample rows compared at most (the validation rows always among them).
GATE_ROWS = 5000
#: Rows per probe (one field made missing or unseen).
PROBE_ROWS = 16
UNSEEN_PROBE = "__rtserve_unseen_probe__"
OFF_REASON = "export switched off at build (optimize='off')"


@dataclass
class _Tally:
    """Running comparison over groups of rows."""

    rows: int = 0
    probe_rows: int = 0
    max_abs_diff: float = 0.0
    label_mismatches: float = 0.0
    problem: str = ""

    def parity(self, tolerance: float) -> ExportParity:
        compared = self.rows + self.probe_rows
        finite = np.isfinite(self.max_abs_diff)
        rate = self.label_mismatches / compared if compared else 0.0
        passed = not self.problem and finite and self.max_abs_diff <= tolerance and rate == 0.0
        return ExportParity(
            rows=self.rows,
            probe_rows=self.probe_rows,
            max_abs_diff=float(self.max_abs_diff) if finite else None,
            label_mismatch_rate=rate,
            tolerance=tolerance,
            passed=bool(passed),
        )


def optimize(
    model: Any,
    adapter: RuntimeAdapter,
    description: Description,
    native: Runtime,
    schema: Schema,
    columns: Columns,
    validation_rows: AnyArray,
    directory: Path,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Optimized | None:
    """Export ``model`` to ONNX under ``directory`` and gate it on parity with ``native``; the
    conversions of ``exports`` are tried in turn, the first at parity serves.

    Returns the manifest record: ONNX serves if a gate passed; otherwise the exports' files
    are removed and the (last) reason is recorded. None for models that are ONNX already.
    """
    if adapter.name == OnnxAdapter.name:
        return None
    attempts = exports(model, adapter.name, description, schema)
    rows = np.union1d(validation_rows, sample_rows(_length(columns), GATE_ROWS, seed=1))
    sample = take(columns, rows)  # every export is compared on the same rows
    outcome: Optimized | None = None  # the last export's, while none serves
    while outcome is None or outcome.serving != "onnx":
        try:
            exported = next(attempts, None)
        except UnsupportedModelError as exc:
            return outcome or Optimized(serving="native", reason=f"not exported: {exc.message}")
        if exported is None:
            break
        outcome = _gate(exported, description, native, schema, sample, directory, tolerance)
    return outcome


def _gate(
    exported: Export,
    description: Description,
    native: Runtime,
    schema: Schema,
    sample: Columns,
    directory: Path,
    tolerance: float,
) -> Optimized:
    """Write ``exported`` under ``directory`` and serve it if it loads and is at parity with
    ``native`` on ``sample`` (its files are removed otherwise)."""
    spec = RuntimeSpec(
        adapter=OnnxAdapter.name,
        format="onnx",
        files=[OPTIMIZED_FILE],
        options=exported.options,
    )
    target = directory / OPTIMIZED_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.write_bytes(exported.proto.SerializeToString())
        onnx_description = Description(description.outputs, exported.input_frame, spec.options)
        candidate = OnnxAdapter().load(directory, spec, onnx_description, Trust())
    except Exception as exc:  # noqa: BLE001 - any failure here means: serve natively
        shutil.rmtree(directory / OPTIMIZED_DIR, ignore_errors=True)
        return Optimized(
            serving="native",
            reason=f"export not loadable by ONNX Runtime ({type(exc).__name__}: {exc})",
            packages=exported.packages,
        )
    parity, reason = compare(native, candidate, schema, sample, tolerance)
    if not parity.passed:
        shutil.rmtree(directory / OPTIMIZED_DIR, ignore_errors=True)
        return Optimized(serving="native", reason=reason, parity=parity, packages=exported.packages)
    return Optimized(
        serving="onnx",
        runtime=spec,
        input_frame=exported.input_frame,
        parity=parity,
        packages=exported.packages,
    )


def compare(
    native: Runtime, candidate: Runtime, schema: Schema, columns: Columns, tolerance: float
) -> tuple[ExportParity, str]:
    """Parity of ``candidate`` against ``native`` on ``columns`` and on probes built from them.

    Returns the parity figures and, when the gate fails, the sentence saying why.
    """
    tally = _Tally()
    base = take(columns, np.arange(min(PROBE_ROWS, _length(columns))))
    groups = [("the sample rows", columns, False), *probes(schema, base)]
    with warnings.catch_warnings():
        # "unknown categories encoded as zeros" and the like are answers, not failures.
        warnings.simplefilter("ignore")
        for label, group, is_probe in groups:
            _compare_group(tally, native, candidate, label, group, is_probe)
            if tally.problem:
                break
    parity = tally.parity(tolerance)
    if parity.passed:
        return parity, ""
    if tally.problem:
        return parity, f"export rejected: {tally.problem}"
    diff = "not comparable" if parity.max_abs_diff is None else f"{parity.max_abs_diff:.3g}"
    return parity, (
        f"export rejected: max |diff| of outputs {diff} (tolerance {tolerance:g}), "
        f"{parity.label_mismatch_rate:.2%} of labels differ, over {parity.rows} sample rows "
        f"and {parity.probe_rows} probe rows"
    )


def _compare_group(
    tally: _Tally, native: Runtime, candidate: Runtime, label: str, group: Columns, probe: bool
) -> None:
    expected, native_error = _try_predict(native, group)
    actual, export_error = _try_predict(candidate, group)
    if expected is None and actual is None:
        return  # both refuse: serving either way answers the same (an error)
    if expected is None:
        tally.problem = (
            f"on {label} the original model fails ({native_error}) but the export answers"
        )
        return
    if actual is None:
        tally.problem = f"on {label} the export fails ({export_error}) but the original answers"
        return
    rows = len(expected)
    diff, labels = actual.max_abs_diff(expected)
    if probe:
        tally.probe_rows += rows
    else:
        tally.rows += rows
    tally.max_abs_diff = max(tally.max_abs_diff, diff)
    tally.label_mismatches += labels * rows
    if probe and not np.isfinite(diff):
        tally.problem = f"on {label} the outputs are not comparable (shape or missing values)"


def _try_predict(runtime: Runtime, columns: Columns) -> tuple[ModelOutput | None, str]:
    try:
        return runtime.predict(columns), ""
    except Exception as exc:  # noqa: BLE001 - a failing runtime is a finding, not a crash
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def probes(schema: Schema, base: Columns) -> list[tuple[str, Columns, bool]]:
    """Copies of ``base`` with one field missing or unseen (and all nullable fields missing)."""
    nullable = [s.name for s in schema.inputs if s.missing is MissingPolicy.PASS]
    groups = [(f"rows with {n!r} missing", _with_missing(base, [n]), True) for n in nullable]
    if len(nullable) > 1:
        groups.append(
            ("rows with every nullable field missing", _with_missing(base, nullable), True)
        )
    for spec in schema.inputs:
        if spec.type is FieldType.STRING and (
            spec.allowed is None or spec.unseen is UnseenPolicy.PASS
        ):
            probe = dict(base)
            probe[spec.name] = np.full(_length(base), UNSEEN_PROBE, dtype=object)
            groups.append((f"rows with an unseen value in {spec.name!r}", probe, True))
    return groups


def _with_missing(base: Columns, names: list[str]) -> Columns:
    """Missing values as the validator writes them: NaN for numbers, None otherwise."""
    out = dict(base)
    n = _length(base)
    for name in names:
        if base[name].dtype.kind in "fiu":
            out[name] = np.full(n, np.nan, dtype=np.float64)
        else:
            out[name] = np.full(n, None, dtype=object)
    return out


def _length(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def switched_off() -> Optimized:
    """The record of a build with ``optimize='off'``."""
    return Optimized(serving="native", reason=OFF_REASON)
