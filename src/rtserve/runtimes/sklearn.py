"""scikit-learn estimators and pipelines, stored with skops (pickle only as a trusted last resort)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import RuntimeSpec
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import BundleError, UnsafeArtifactError, UnsupportedModelError
from rtserve.runtimes.base import Description, ModelOutput, Runtime, RuntimeAdapter, Trust
from rtserve.runtimes.frame import describe_frame, to_frame, to_matrix
from rtserve.types import Columns, Task

#: skops may be told to trust a type only if it comes from one of these libraries.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "xgboost.", "lightgbm.")
SKOPS_FILE = "model/model.skops"
PICKLE_FILE = "model/model.joblib"


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
        """Write the artifact in the framework's own format and say how to load it."""
        import skops.io as sio

        target = directory / SKOPS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        untrusted: list[str] = []
        reason = ""
        try:
            sio.dump(model, target)
            untrusted = sorted(sio.get_untrusted_types(file=target))
            outside = [t for t in untrusted if not t.startswith(TRUSTED_MODULE_PREFIXES)]
            if outside:
                reason = f"skops would have to trust types outside known ML libraries: {outside}"
            else:
                loaded = sio.load(target, trusted=untrusted)
                if not _same_params(loaded, model):
                    reason = "the skops round trip changed the model's parameters"
        except Exception as exc:  # noqa: BLE001 - skops raises many kinds for what it cannot represent
            reason = f"skops cannot represent this model ({type(exc).__name__}: {exc})"
        if not reason:
            return RuntimeSpec(
                adapter=self.name,
                format="skops",
                files=[SKOPS_FILE],
                options={**description.options, "trusted_types": untrusted},
            )
        target.unlink(missing_ok=True)
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
        warnings.warn(
            f"stored the model as a pickle because {reason}; loading this bundle will need "
            "trust_pickle=True and its pinned digest",
            stacklevel=3,
        )
        return RuntimeSpec(
            adapter=self.name,
            format="pickle",
            files=[PICKLE_FILE],
            unsafe=True,
            options={**description.options, "pickle_reason": reason},
        )

    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""
        if spec.format == "skops":
            import skops.io as sio

            recorded = list(spec.options.get("trusted_types", []))
            outside = [t for t in recorded if not t.startswith(TRUSTED_MODULE_PREFIXES)]
            if outside:
                raise UnsafeArtifactError(
                    f"rtserve.yaml asks to trust {outside}, which are not from known ML "
                    "libraries; refusing to load",
                    field="runtime.options.trusted_types",
                )
            path = directory / SKOPS_FILE
            needed = sorted(sio.get_untrusted_types(file=path))
            unexpected = sorted(set(needed) - set(recorded))
            if unexpected:
                raise UnsafeArtifactError(
                    f"{SKOPS_FILE} needs types that were not trusted at build: {unexpected}",
                    field=SKOPS_FILE,
                )
            model = sio.load(path, trusted=needed)
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
    """A model from a user's ``.skops`` file, trusting only types from known ML libraries.

    Raises:
        UnsafeArtifactError: the file needs a type from outside ``TRUSTED_MODULE_PREFIXES``.
    """
    import skops.io as sio

    untrusted = sorted(sio.get_untrusted_types(file=path))
    outside = [t for t in untrusted if not t.startswith(TRUSTED_MODULE_PREFIXES)]
    if outside:
        libraries = ", ".join(p.rstrip(".") for p in TRUSTED_MODULE_PREFIXES)
        raise UnsafeArtifactError(
            f"{path}: the skops file needs types from outside known ML libraries: {outside}; "
            f"rtserve trusts only types from {libraries}. Build the model from library "
            "components, or load it yourself and call rtserve.build() from Python"
        )
    return sio.load(path, trusted=untrusted)


def read_pickle_file(path: Path) -> Any:
    """A model from a user's pickle or joblib file; the caller has the user's word that it is trusted.

    Unpickling runs code from the file: call this only after the user explicitly said so.
    """
    import joblib  # reads plain pickles too

    return joblib.load(path)
