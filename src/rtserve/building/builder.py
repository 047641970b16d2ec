"""Build a bundle from a fitted model and a training sample."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rtserve.building import environment
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import Manifest, RuntimeSpec
from rtserve.bundle.naming import check_name, check_version
from rtserve.bundle.profile import build_profile
from rtserve.bundle.sample import (
    DEFAULT_ROWS,
    ValidationSample,
    jsonable,
    sample_rows,
    take,
    with_missing_rows,
)
from rtserve.bundle.schema import FieldType, Schema, UnseenPolicy
from rtserve.bundle.schema_inference import as_frame, infer_fields
from rtserve.bundle.validator import Validator
from rtserve.errors import BundleError, RtserveError, SchemaDefinitionError, ValidationError
from rtserve.runtimes import export_gate
from rtserve.runtimes.base import Description, ModelOutput, Runtime, RuntimeAdapter, Trust
from rtserve.runtimes.registry import adapter_for
from rtserve.runtimes.sklearn import SklearnAdapter
from rtserve.types import Columns

#: The saved artifact must reproduce the in-memory model this closely on the validation rows.
ROUND_TRIP_TOLERANCE = 1e-9
_UNSEEN_PROBE = "__rtserve_unseen_probe__"


def build(
    model: Any,
    sample: Any,
    *,
    name: str,
    version: str,
    description: str = "",
    schema_overrides: dict[str, dict[str, Any]] | None = None,
    extra_fields: str = "reject",
    validation_rows: int = DEFAULT_ROWS,
    optimize: str = "auto",
    allow_pickle: bool = False,
) -> Bundle:
    """Package a fitted model with its schema, profile, validation sample and hashes.

    Args:
        model: a fitted scikit-learn estimator or Pipeline, XGBoost or LightGBM model (wrapper
            or Booster), or an ONNX model (``onnx.ModelProto`` or a path to a ``.onnx`` file).
        sample: training rows (DataFrame, 2-D array or dict of columns) with the model's input
            columns; the schema and profile are inferred from it.
        name: model name (lowercase, URL-safe).
        version: version label of this build.
        schema_overrides: per-field changes to the inferred schema, e.g.
            ``{"amount": {"minimum": 0}, "email": {"pii": True}}``.
        extra_fields: ``"reject"`` (default) or ``"ignore"`` unknown keys in records.
        validation_rows: how many sample rows to keep with their outputs (plus a few rows
            with missing values, when the sample has them).
        optimize: ``"auto"`` exports the model to ONNX and serves the export when it matches
            the original on the sample (``rtserve.runtimes.export_gate``); ``"off"`` skips it.
            The native artifact is always kept.
        allow_pickle: store a scikit-learn model as a pickle when no safe format holds it: a
            custom (non-library) function or class, or anything else outside the allow-list of
            ``rtserve.runtimes.trusted_types``. Such a bundle loads only with
            ``trust_pickle=True`` and its pinned digest. Without it (the default) the build
            refuses such a model and says why.

    Returns:
        A verified ``Bundle`` in a temporary directory; call ``.save(path)`` to keep it.
    """
    check_name(name)
    check_version(version)
    if optimize not in ("auto", "off"):
        raise BundleError(f"optimize={optimize!r} is not one of 'auto', 'off'", field="optimize")
    adapter = adapter_for(model)
    frame = as_frame(sample, _feature_names(model))
    described = _describe(adapter, model, frame)
    schema = Schema(
        inputs=infer_fields(frame),
        outputs=described.outputs,
        extra_fields=extra_fields,  # type: ignore[arg-type]
    )
    if schema_overrides:
        schema = schema.with_overrides(schema_overrides)
    schema = _forget_pii_values(schema, schema_overrides or {})

    workdir = Path(tempfile.mkdtemp(prefix="rtserve-build-"))
    try:
        spec = _save(adapter, model, workdir, described, allow_pickle=allow_pickle)
        loaded_description = Description(described.outputs, described.input_frame, spec.options)
        # The build just wrote this artifact itself, so loading it back is not an act of trust.
        runtime = adapter.load(workdir, spec, loaded_description, Trust(True, "build"))
        columns = _validate_sample(schema, frame)
        schema = _probe_unseen(schema, runtime, columns, set(schema_overrides or ()))
        outputs = _predict_sample(runtime, columns)
        rows = with_missing_rows(columns, sample_rows(len(frame), validation_rows))
        original = adapter.wrap(model, loaded_description)
        if original is not None:
            _check_round_trip(original, runtime, take(columns, rows))
        profile = build_profile(
            schema, columns, outputs.label, outputs.probabilities, outputs.value
        )
        (workdir / "profile.json").write_text(profile.model_dump_json(indent=1), encoding="utf-8")
        validation = _validation_sample(columns, outputs, rows)
        (workdir / "validation.json").write_text(
            json.dumps(validation.model_dump(), allow_nan=False), encoding="utf-8"
        )
        optimized = (
            export_gate.optimize(
                model, adapter, loaded_description, runtime, schema, columns, rows, workdir
            )
            if optimize == "auto"
            else export_gate.switched_off()
        )
        manifest = Manifest(
            name=name,
            version=version,
            description=description,
            created_at=datetime.now(UTC).replace(microsecond=0),
            model_schema=schema,
            input_frame=described.input_frame,
            runtime=spec,
            optimized=optimized,
            environment=environment.capture(adapter.packages),
            files={},
        )
        return Bundle.seal(workdir, manifest, cleanup=workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _save(
    adapter: RuntimeAdapter,
    model: Any,
    directory: Path,
    described: Description,
    *,
    allow_pickle: bool,
) -> RuntimeSpec:
    """The adapter's artifact: a pickle only where the caller chose it (scikit-learn only)."""
    if allow_pickle and isinstance(adapter, SklearnAdapter):
        return adapter.save_with(model, directory, described, allow_pickle=True)
    return adapter.save(model, directory, described)


def _predict_sample(runtime: Runtime, columns: Columns) -> ModelOutput:
    """The saved model's outputs on the sample; a framework's refusal becomes a BundleError."""
    try:
        return runtime.predict(columns)
    except RtserveError:
        raise
    except Exception as exc:  # each framework raises its own types for data it cannot take
        raise BundleError(
            f"the model cannot predict on the sample ({type(exc).__name__}: {exc}); pass a sample "
            "with the training columns and dtypes (parquet keeps them; CSV loses e.g. the "
            "category dtype)",
            field="sample",
        ) from exc


def _describe(adapter: RuntimeAdapter, model: Any, frame: Any) -> Description:
    """The adapter's description; the framework's own error on the sample becomes a BundleError."""
    try:
        return adapter.describe(model, frame)
    except RtserveError:
        raise
    except Exception as exc:  # e.g. sklearn's ValueError for a sample without a training column
        raise BundleError(
            f"the model cannot predict on the sample ({type(exc).__name__}: {exc}); pass a sample "
            "with the columns and types the model was trained on"
        ) from exc


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _validate_sample(schema: Schema, frame: Any) -> Columns:
    try:
        return Validator(schema).frame(frame)
    except ValidationError as exc:
        raise SchemaDefinitionError(
            f"the sample itself breaks the schema: {exc.message}; loosen the override or fix "
            "the sample",
            field=exc.field,
        ) from exc


def _forget_pii_values(schema: Schema, overrides: dict[str, dict[str, Any]]) -> Schema:
    """Keep training values of PII fields out of the bundle: drop their inferred allowed lists.

    The list stays when the user declared ``allowed`` or ``unseen`` for that field: enforcing the
    values was then a deliberate choice.
    """
    changes = {
        spec.name: {"allowed": None, "unseen": UnseenPolicy.PASS}
        for spec in schema.inputs
        if spec.pii
        and spec.allowed is not None
        and not {"allowed", "unseen"} & set(overrides.get(spec.name, {}))
    }
    return schema.with_overrides(changes) if changes else schema


def _probe_unseen(
    schema: Schema, runtime: Runtime, columns: Columns, overridden: set[str]
) -> Schema:
    """Tighten ``unseen: pass`` to ``reject`` for fields where the model fails on a new category.

    Without this, a client's unknown category would surface as a model failure (a 5xx) instead of
    a 422 naming the field.
    """
    changes: dict[str, dict[str, Any]] = {}
    first = {name: values[:1].copy() for name, values in columns.items()}
    for spec in schema.inputs:
        if (
            spec.type is not FieldType.STRING
            or spec.allowed is None
            or spec.unseen is not UnseenPolicy.PASS
            or spec.name in overridden
        ):
            continue
        probe = dict(first)
        probe[spec.name] = np.array([_UNSEEN_PROBE], dtype=object)
        try:
            # A warning (e.g. "unknown category encoded as zeros") is an answer, not a failure,
            # whatever the caller's warning filters say.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runtime.predict(probe)
        except Exception:  # noqa: BLE001 - any failure means the model cannot take it
            changes[spec.name] = {"unseen": UnseenPolicy.REJECT}
    return schema.with_overrides(changes) if changes else schema


def _check_round_trip(original: Runtime, loaded: Runtime, columns: Columns) -> None:
    diff, labels = loaded.predict(columns).max_abs_diff(original.predict(columns))
    if diff > ROUND_TRIP_TOLERANCE or labels > 0:
        raise BundleError(
            f"the saved artifact does not reproduce the model (max |diff| {diff:.3g}, "
            f"{labels:.1%} labels differ); this framework version may not round-trip the model"
        )


def _validation_sample(columns: Columns, outputs: ModelOutput, rows: Any) -> ValidationSample:
    recorded: dict[str, list[Any]] = {}
    for key, array in (
        ("label", outputs.label),
        ("probabilities", outputs.probabilities),
        ("value", outputs.value),
    ):
        if array is not None:
            recorded[key] = jsonable(np.asarray(array)[rows])
    return ValidationSample(
        rows=len(rows),
        inputs={name: jsonable(values[rows]) for name, values in columns.items()},
        outputs=recorded,
    )
