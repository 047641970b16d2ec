"""scikit-learn estimators and pipelines, stored with skops; a pickle only when the builder asks.

A skops file names every class and function it holds, and loading it imports them. Before skops
sees a file (at build, at load and for a user's ``.skops`` model file) every such name is checked
against the allow-list in ``rtserve.runtimes.trusted_types``: a node-by-node walk of the file's
schema, plus every type skops itself would have to be told to trust. Anything outside the list is
refused with an ``UntrustedCodeError`` naming it. A model that needs more (a custom function or
class) is stored as a pickle only when the caller chose that path (``allow_pickle=True``); such a
bundle loads only with ``trust_pickle=True`` and its pinned digest.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import RuntimeSpec
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import (
    BundleError,
    UnsafeArtifactError,
    UnsupportedModelError,
    UntrustedCodeError,
)
from rtserve.runtimes import trusted_types
from rtserve.runtimes.base import Description, ModelOutput, Runtime, RuntimeAdapter, Trust
from rtserve.runtimes.frame import describe_frame, to_frame, to_matrix
from rtserve.types import Columns, Task

SKOPS_FILE = "model/model.skops"
PICKLE_FILE = "model/model.joblib"
#: The member of a skops zip that lists every object, class and function of the model.
SKOPS_SCHEMA = "schema.json"
#: A skops schema larger than this is refused before it is parsed (real ones are a few MiB).
SKOPS_SCHEMA_MAX_BYTES = 64 << 20
#: How many offending names a refusal message spells out (every one is in ``.names``).
MESSAGE_NAMES = 10
#: How to package a model the allow-list refuses, for build-time messages.
PICKLE_PATH_HINT = (
    "To package it anyway, move custom functions and classes into an importable module (one "
    "defined in a notebook or __main__ cannot be loaded by any other process) and build with "
    "allow_pickle=True (CLI: rtserve build MODEL.pkl --trust-pickle); that bundle stores a pickle "
    "and loads only with trust_pickle=True and its pinned digest (CLI: --trust-pickle "
    "--pin-digest)"
)


class SklearnRuntime(Runtime):
    """Calls the estimator's own predict / predict_proba on the training layout."""

    def __init__(self, model: Any, description: Description) -> None:
        self._model = model
        self._layout = description.input_frame
        self._names = list(description.input_frame.dtypes)
        self._outputs = description.outputs
        self._label_from_proba = bool(description.options.get("label_from_proba"))
        self._classes = (
            np.asarray(model.classes_) if self._outputs.task is Task.CLASSIFICATION else None
        )

    def predict(self, columns: Columns) -> ModelOutput:
        """Predict every row of ``columns`` with the loaded model."""
        features = (
            to_frame(columns, self._layout)
            if self._layout.kind == "frame"
            else to_matrix(columns, self._names)
        )
        return predict_estimator(
            self._model, features, self._outputs, self._classes, self._label_from_proba
        )


def predict_estimator(
    model: Any,
    features: Any,
    outputs: OutputSpec,
    classes: Any,
    label_from_proba: bool,
) -> ModelOutput:
    """Label/probabilities or value from an sklearn-style estimator (shared with the boosters)."""
    if outputs.task is Task.CLASSIFICATION:
        if outputs.probabilities:
            proba = np.asarray(model.predict_proba(features))
            if label_from_proba:
                return ModelOutput(label=classes[np.argmax(proba, axis=1)], probabilities=proba)
            return ModelOutput(label=np.asarray(model.predict(features)), probabilities=proba)
        return ModelOutput(label=np.asarray(model.predict(features)))
    return ModelOutput(value=np.asarray(model.predict(features)))


def describe_estimator(model: Any, frame: pd.DataFrame) -> Description:
    """Task, classes and layout of an sklearn-API estimator, checked on the sample."""
    from sklearn.base import is_classifier

    kind = "frame" if hasattr(model, "feature_names_in_") else "matrix"
    layout = describe_frame(frame, kind)
    options: dict[str, Any] = {}
    if is_classifier(model) or hasattr(model, "classes_"):
        classes = np.asarray(model.classes_).tolist()
        has_proba = hasattr(model, "predict_proba")
        features = frame if kind == "frame" else frame.to_numpy()
        if has_proba:
            try:
                proba = np.asarray(model.predict_proba(features))
            except (AttributeError, NotImplementedError):
                has_proba = False
            else:
                labels = np.asarray(model.predict(features))
                from_proba = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
                options["label_from_proba"] = bool(np.array_equal(labels, from_proba))
        outputs = OutputSpec(task=Task.CLASSIFICATION, classes=classes, probabilities=has_proba)
    else:
        first = frame.iloc[:1] if kind == "frame" else frame.to_numpy()[:1]
        value = np.asarray(model.predict(first))
        width = 1 if value.ndim == 1 else int(value.shape[1])
        outputs = OutputSpec(task=Task.REGRESSION, width=width)
    return Description(outputs=outputs, input_frame=layout, options=options)


class SklearnAdapter(RuntimeAdapter):
    """Any fitted scikit-learn estimator or Pipeline."""

    name = "sklearn"
    packages = ("scikit-learn", "numpy", "scipy")

    def accepts(self, model: object) -> bool:
        """True for the model types this adapter packages (imports nothing)."""
        from sklearn.base import BaseEstimator

        return isinstance(model, BaseEstimator) and hasattr(model, "predict")

    def describe(self, model: Any, sample: Any) -> Description:
        """Task, classes and input layout, learned from the model and the sample frame."""
        require_fitted(model)
        return describe_estimator(model, sample)

    def save(self, model: Any, directory: Path, description: Description) -> RuntimeSpec:
        """Write the model with skops, refusing what the allow-list does not hold (no pickle)."""
        return self.save_with(model, directory, description, allow_pickle=False)

    def save_with(
        self, model: Any, directory: Path, description: Description, *, allow_pickle: bool
    ) -> RuntimeSpec:
        """Write the model with skops; with ``allow_pickle``, as a pickle when skops cannot.

        Raises:
            UntrustedCodeError: the model holds code outside the allow-list (and no pickle).
            UnsupportedModelError: skops cannot hold the model (and no pickle, or pickle fails).
        """
        import skops.io as sio

        target = directory / SKOPS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        refused: dict[str, str] = {}
        reason = ""
        try:
            sio.dump(model, target)
        except Exception as exc:  # noqa: BLE001 - skops raises many kinds for what it cannot represent
            reason = f"skops cannot represent this model ({type(exc).__name__}: {exc})"
        else:
            needed, refused = audit_skops_file(target)
            if refused:
                reason = f"the model uses {_listing(refused)}, which are not on the allow-list"
            elif not _same_params(sio.load(target, trusted=needed), model):
                reason = "the skops round trip changed the model's parameters"
            else:
                return RuntimeSpec(
                    adapter=self.name,
                    format="skops",
                    files=[SKOPS_FILE],
                    options={**description.options, "trusted_types": needed},
                )
        target.unlink(missing_ok=True)
        if not allow_pickle:
            if refused:
                raise UntrustedCodeError(
                    f"the model uses {_listing(refused)}, which rtserve will not store in a "
                    f"safe bundle: {trusted_types.describe_allow_list()}. Anything else would be "
                    f"imported, and could be called, wherever the bundle loads. {PICKLE_PATH_HINT}",
                    names=sorted(refused),
                    field="model",
                )
            raise UnsupportedModelError(
                f"cannot store this model safely: {reason}. {PICKLE_PATH_HINT}", field="model"
            )
        return _save_pickle(model, directory, description, reason, sorted(refused))

    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""
        if spec.format == "skops":
            model = _load_skops(directory, spec)
        elif spec.format == "pickle":
            if not (trust.allow_pickle and trust.pinned_digest):
                raise UnsafeArtifactError(
                    "this bundle holds a pickle; it loads only with trust_pickle=True and the "
                    "bundle digest pinned",
                    field=PICKLE_FILE,
                )
            import joblib

            model = joblib.load(directory / PICKLE_FILE)
        else:
            raise BundleError(
                f"runtime format {spec.format!r} is not one the sklearn adapter reads"
            )
        return SklearnRuntime(model, description)

    def wrap(self, model: Any, description: Description) -> Runtime | None:
        """A runtime around the in-memory model, to prove the saved artifact reproduces it."""
        return SklearnRuntime(model, description)


def _load_skops(directory: Path, spec: RuntimeSpec) -> Any:
    """The model in a bundle's skops file, once the manifest and the file pass the allow-list."""
    import skops.io as sio
    from sklearn.base import BaseEstimator

    recorded = spec.options.get("trusted_types", [])
    if not isinstance(recorded, list) or not all(isinstance(t, str) for t in recorded):
        raise UntrustedCodeError(
            "rtserve.yaml: runtime.options.trusted_types must be a list of dotted type names, "
            f"not {type(recorded).__name__}; rebuild the bundle",
            names=[],
            field="runtime.options.trusted_types",
        )
    outside = sorted(t for t in recorded if not trusted_types.allows_any_role(t, BaseEstimator))
    if outside:
        raise UntrustedCodeError(
            f"rtserve.yaml asks skops to trust {outside}, which are not on rtserve's allow-list: "
            f"{trusted_types.describe_allow_list()}. Refusing to load; this bundle was edited or "
            "built by other rules. Rebuild it, or for a model you trust, build it with "
            "allow_pickle=True and load it with trust_pickle=True and its pinned digest",
            names=outside,
            field="runtime.options.trusted_types",
        )
    path = directory / SKOPS_FILE
    needed, refused = audit_skops_file(path)
    if refused:
        raise UntrustedCodeError(
            f"{SKOPS_FILE} names {_listing(refused)}, which rtserve will not load: "
            f"{trusted_types.describe_allow_list()}. Refusing before importing anything: this "
            "bundle was edited after its build or built by other rules, and its hashes prove "
            "nothing here (whoever edits a bundle can recompute them). If you trust this model, "
            "rebuild it with allow_pickle=True and load that bundle with trust_pickle=True and "
            "its pinned digest",
            names=sorted(refused),
            field=SKOPS_FILE,
        )
    unexpected = sorted(set(needed) - set(recorded))
    if unexpected:
        raise UnsafeArtifactError(
            f"{SKOPS_FILE} needs types that were not trusted at build: {unexpected}",
            field=SKOPS_FILE,
        )
    return sio.load(path, trusted=needed)


def audit_skops_file(path: Path) -> tuple[list[str], dict[str, str]]:
    """(types skops must be told to trust, {refused name: its role}) for a skops file.

    Walks every node of the file's schema and checks the name it carries in the role its node
    kind gives it; only when all pass does skops list the types it wants trusted, each of which
    must be allowed too (skops reads some names from plain data that the walk cannot see).
    Nothing from the file is imported, constructed or called.
    """
    import skops.io as sio
    from sklearn.base import BaseEstimator
    from skops.io._protocol import PROTOCOL

    schema = _read_schema(path)
    protocol = schema.get("protocol") if isinstance(schema, dict) else None
    if protocol != PROTOCOL:
        # skops reads older protocols with older node readers, some of which take the class or
        # function to import from the node's content rather than from the names checked here.
        raise UnsafeArtifactError(
            f"{path.name} is in skops file protocol {protocol!r}; rtserve reads only protocol "
            f"{PROTOCOL} (the installed skops's own), whose every name it can check. Rebuild the "
            "bundle, or save the model again, with the installed skops",
            field=SKOPS_FILE,
        )
    refused: dict[str, str] = {}
    for loader, name in _schema_nodes(schema):
        if loader in trusted_types.SKOPS_REFERENCE_NODES:
            continue
        role = trusted_types.SKOPS_NODE_ROLES.get(loader)
        if role is None:
            refused.setdefault(name, _NODE_KINDS.get(loader, f"a skops {loader!r} entry"))
        elif not trusted_types.allows(name, role, BaseEstimator):
            refused.setdefault(name, f"a {role}")
    if refused:
        return [], refused
    needed = sorted(sio.get_untrusted_types(file=path))
    for name in needed:
        if not trusted_types.allows_any_role(name, BaseEstimator):
            refused.setdefault(name, "a type skops must be told to trust")
    return needed, refused


#: How refusal messages call the skops node kinds that are never allowed.
_NODE_KINDS = {
    "MethodNode": "a bound method",
    "PartialNode": "a functools.partial",
    "OperatorFuncNode": "an operator.attrgetter/itemgetter/methodcaller",
}


def _read_schema(path: Path) -> Any:
    """The parsed schema of a skops file, size-checked before it is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(SKOPS_SCHEMA)
            if info.file_size > SKOPS_SCHEMA_MAX_BYTES:
                raise BundleError(
                    f"{path.name}: its {SKOPS_SCHEMA} is {info.file_size} bytes, over the "
                    f"{SKOPS_SCHEMA_MAX_BYTES}-byte limit for a model schema",
                    field=SKOPS_FILE,
                )
            return json.loads(archive.read(info))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(
            f"{path.name} is not a readable skops file ({type(exc).__name__}: {exc})",
            field=SKOPS_FILE,
        ) from exc


def _schema_nodes(schema: Any) -> Iterator[tuple[str, str]]:
    """(node kind, dotted name) of every entry of a skops schema that names a class or function.

    Iterative, and it visits every dict and list whatever its key, so no nesting hides a node.
    """
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item or "__module__" in item or "__class__" in item:
                yield (
                    str(item.get("__loader__")),
                    f"{item.get('__module__')}.{item.get('__class__')}",
                )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _listing(refused: dict[str, str]) -> str:
    """``name (role), ...`` for the first few refused names, with a count of the rest."""
    names = sorted(refused)
    shown = ", ".join(f"{n} ({refused[n]})" for n in names[:MESSAGE_NAMES])
    hidden = len(names) - MESSAGE_NAMES
    return shown + (f" and {hidden} more" if hidden > 0 else "")


def _save_pickle(
    model: Any, directory: Path, description: Description, reason: str, refused: list[str]
) -> RuntimeSpec:
    """The pickle path, taken only because the caller passed ``allow_pickle=True``."""
    import joblib

    pickle_path = directory / PICKLE_FILE
    try:
        joblib.dump(model, pickle_path)
    except Exception as exc:  # pickle raises PicklingError, AttributeError, TypeError...
        pickle_path.unlink(missing_ok=True)
        raise UnsupportedModelError(
            f"cannot store this model: {reason}, and pickle cannot either "
            f"({type(exc).__name__}: {exc}); replace lambdas and locally defined functions or "
            "classes with ones importable from a module"
        ) from exc
    local = [name for name in refused if name.startswith("__main__.")]
    elsewhere = (
        f"; it refers to {local}, defined in __main__ (a notebook or script), so it will load "
        "only in a process that defines them: move them into an importable module"
        if local
        else ""
    )
    warnings.warn(
        f"stored the model as a pickle (allow_pickle=True) because {reason}; loading this "
        f"bundle will need trust_pickle=True and its pinned digest{elsewhere}",
        stacklevel=5,  # _save_pickle < save_with < builder._save < build < caller
    )
    return RuntimeSpec(
        adapter=SklearnAdapter.name,
        format="pickle",
        files=[PICKLE_FILE],
        unsafe=True,
        options={**description.options, "pickle_reason": reason},
    )


def _same_params(loaded: Any, original: Any) -> bool:
    try:
        return bool(repr(loaded.get_params(deep=False)) == repr(original.get_params(deep=False)))
    except Exception:  # noqa: BLE001 - estimators without get_params still round-trip
        return True


def require_fitted(model: Any) -> None:
    """Refuse an unfitted estimator with a sentence rather than a deep framework error."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not fitted; call .fit() before building a bundle"
        ) from exc
    except TypeError:
        pass


def read_skops_file(path: Path) -> Any:
    """A model from a user's ``.skops`` file, loaded only if everything it names is allowed.

    Raises:
        UntrustedCodeError: the file names a class or function outside the allow-list.
    """
    import skops.io as sio

    needed, refused = audit_skops_file(path)
    if refused:
        raise UntrustedCodeError(
            f"{path}: the skops file names {_listing(refused)}, which rtserve will not load: "
            f"{trusted_types.describe_allow_list()}. If you trust the file, load it yourself "
            "in Python and call rtserve.build(model, ..., allow_pickle=True), or save the model "
            "with joblib and run rtserve build MODEL.joblib --trust-pickle",
            names=sorted(refused),
            field="model_file",
        )
    return sio.load(path, trusted=needed)


def read_pickle_file(path: Path) -> Any:
    """A model from a user's pickle or joblib file; the caller has the user's word that it is trusted.

    Unpickling runs code from the file: call this only after the user explicitly said so.
    """
    import joblib  # reads plain pickles too

    return joblib.load(path)
