"""Specification: loading enforces trust (pickles need a flag and a pinned digest) and versions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

import rtserve
from rtserve import Bundle
from rtserve.bundle.manifest import read_manifest
from rtserve.engine.framework_versions import FrameworkVersionWarning
from rtserve.errors import (
    EnvironmentMismatchError,
    IntegrityError,
    UnsafeArtifactError,
    UnsupportedModelError,
)
from rtserve.version import installed_version

NUMERIC = ["amount", "hour", "prior_transactions"]


class ClipAmounts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom step defined outside any ML library: skops cannot trust it, so it is pickled."""

    def fit(self, features: Any, target: Any = None) -> ClipAmounts:
        return self

    def transform(self, features: Any) -> Any:
        return np.clip(np.nan_to_num(np.asarray(features, dtype=float)), 0, 500)


def _double(features: Any) -> Any:
    return np.nan_to_num(np.asarray(features, dtype=float)) * 2


@pytest.fixture(scope="module")
def custom_pipeline(transactions: pd.DataFrame, fraud_labels: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(ClipAmounts(), LogisticRegression()).fit(
        transactions[NUMERIC], fraud_labels
    )


@pytest.fixture(scope="module")
def pickle_bundle_dir(
    tmp_path_factory: pytest.TempPathFactory, custom_pipeline: Any, transactions: pd.DataFrame
) -> Path:
    target = tmp_path_factory.mktemp("pickled") / "custom-1"
    with pytest.warns(UserWarning, match="stored the model as a pickle"):
        bundle = rtserve.build(
            custom_pipeline, transactions[NUMERIC], name="custom", version="1", allow_pickle=True
        )
    bundle.save(target)
    return target


def _edit_and_reseal(directory: Path, **changes: Any) -> None:
    """Change manifest sections (as a tool with write access could) and re-seal every hash."""
    manifest = read_manifest(directory)
    Bundle.seal(directory, manifest.model_copy(update=changes))


# --- pickle trust -----------------------------------------------------------------------------


def test_a_model_skops_cannot_trust_is_stored_as_a_pickle_marked_unsafe(
    pickle_bundle_dir: Path,
) -> None:
    runtime = read_manifest(pickle_bundle_dir).runtime
    assert (runtime.format, runtime.unsafe, runtime.files) == (
        "pickle",
        True,
        ["model/model.joblib"],
    )
    assert "ClipAmounts" in runtime.options["pickle_reason"]


def test_a_function_from_outside_ml_libraries_also_falls_back_to_pickle(
    transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(
        transactions[NUMERIC], fraud_labels
    )
    with pytest.warns(UserWarning, match="pickle"):
        bundle = rtserve.build(
            model, transactions[NUMERIC], name="double", version="1", allow_pickle=True
        )
    assert bundle.manifest.runtime.unsafe


def test_a_model_neither_skops_nor_pickle_can_store_is_refused(
    transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(
        FunctionTransformer(lambda x: np.nan_to_num(np.asarray(x, dtype=float))),
        LogisticRegression(),
    ).fit(transactions[NUMERIC], fraud_labels)
    with pytest.raises(UnsupportedModelError, match=r"pickle cannot either.*lambdas"):
        rtserve.build(model, transactions[NUMERIC], name="lambda", version="1", allow_pickle=True)


def test_a_pickle_bundle_is_refused_without_trust(pickle_bundle_dir: Path) -> None:
    digest = Bundle.open(pickle_bundle_dir).digest
    with pytest.raises(UnsafeArtifactError) as caught:
        rtserve.load(pickle_bundle_dir)
    assert "trust_pickle=True" in caught.value.message
    assert digest in caught.value.message  # the refusal tells the operator what to pin


def test_a_pickle_bundle_is_refused_with_trust_but_no_pinned_digest(
    pickle_bundle_dir: Path,
) -> None:
    with pytest.raises(UnsafeArtifactError, match="pinned_digest"):
        rtserve.load(pickle_bundle_dir, trust_pickle=True)


def test_a_pickle_bundle_is_refused_with_a_pinned_digest_but_no_trust(
    pickle_bundle_dir: Path,
) -> None:
    digest = Bundle.open(pickle_bundle_dir).digest
    with pytest.raises(UnsafeArtifactError, match="trust_pickle=True"):
        rtserve.load(pickle_bundle_dir, pinned_digest=digest)


def test_a_pickle_bundle_is_refused_with_a_wrong_digest(pickle_bundle_dir: Path) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(UnsafeArtifactError, match="does not match the pinned") as caught:
        rtserve.load(pickle_bundle_dir, trust_pickle=True, pinned_digest=wrong)
    assert caught.value.field == "digest"


def test_a_pickle_bundle_loads_with_trust_and_its_pinned_digest(
    pickle_bundle_dir: Path, custom_pipeline: Any, holdout_transactions: pd.DataFrame
) -> None:
    digest = Bundle.open(pickle_bundle_dir).digest
    predictor = rtserve.load(pickle_bundle_dir, trust_pickle=True, pinned_digest=digest)
    new = holdout_transactions[NUMERIC]
    np.testing.assert_allclose(
        predictor.predict(new).probabilities, custom_pipeline.predict_proba(new), rtol=0, atol=1e-9
    )


def test_a_resealed_pickle_bundle_no_longer_matches_its_pin(
    pickle_bundle_dir: Path, tmp_path: Path
) -> None:
    pinned = Bundle.open(pickle_bundle_dir).digest
    copy = Bundle.open(pickle_bundle_dir).save(tmp_path / "copy")
    _edit_and_reseal(copy.path, description="swapped by someone else")
    with pytest.raises(UnsafeArtifactError, match="not the bundle you trusted"):
        rtserve.load(copy.path, trust_pickle=True, pinned_digest=pinned)


def test_a_pinned_digest_is_checked_for_safe_bundles_too(fraud_bundle_dir: Path) -> None:
    digest = Bundle.open(fraud_bundle_dir).digest
    assert rtserve.load(fraud_bundle_dir, pinned_digest=digest).digest == digest
    with pytest.raises(UnsafeArtifactError, match="does not match the pinned"):
        rtserve.load(fraud_bundle_dir, pinned_digest="sha256:" + "f" * 64)


def test_a_manifest_asking_skops_to_trust_foreign_types_is_refused(
    fraud_bundle_copy: Path,
) -> None:
    runtime = read_manifest(fraud_bundle_copy).runtime
    options = {**runtime.options, "trusted_types": ["builtins.eval", "os.system"]}
    _edit_and_reseal(fraud_bundle_copy, runtime=runtime.model_copy(update={"options": options}))
    with pytest.raises(UnsafeArtifactError, match="not on rtserve's allow-list"):
        rtserve.load(fraud_bundle_copy, force_native=True)  # the ONNX export never reads skops


def test_a_skops_file_needing_types_not_trusted_at_build_is_refused(
    fraud_bundle_copy: Path,
) -> None:
    runtime = read_manifest(fraud_bundle_copy).runtime
    options = {**runtime.options, "trusted_types": []}
    _edit_and_reseal(fraud_bundle_copy, runtime=runtime.model_copy(update={"options": options}))
    with pytest.raises(UnsafeArtifactError, match="not trusted at build"):
        rtserve.load(fraud_bundle_copy, force_native=True)  # the ONNX export never reads skops


def test_a_bundle_object_is_verified_again_when_loaded(fraud_bundle_copy: Path) -> None:
    bundle = Bundle.open(fraud_bundle_copy)
    (fraud_bundle_copy / "profile.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"profile.json"):
        rtserve.load(bundle)


# --- framework versions -----------------------------------------------------------------------


def _pretend_built_with(directory: Path, package: str, version: str) -> None:
    environment = read_manifest(directory).environment
    packages = {**environment.packages, package: version}
    _edit_and_reseal(directory, environment=environment.model_copy(update={"packages": packages}))


def test_a_framework_minor_version_mismatch_warns_naming_both_versions(
    fraud_bundle_copy: Path,
) -> None:
    here = installed_version("scikit-learn")
    _pretend_built_with(fraud_bundle_copy, "scikit-learn", "0.99.0")
    with pytest.warns(FrameworkVersionWarning) as caught:
        predictor = rtserve.load(fraud_bundle_copy)
    (warning,) = caught
    assert f"scikit-learn {here} is installed" in str(warning.message)
    assert "built with scikit-learn 0.99.0" in str(warning.message)
    assert predictor.check_parity().passed  # a warning, not a refusal


def test_strict_versions_refuse_a_framework_mismatch(fraud_bundle_copy: Path) -> None:
    _pretend_built_with(fraud_bundle_copy, "scikit-learn", "0.99.0")
    with pytest.raises(
        EnvironmentMismatchError, match=r"0.99.0.*strict version checking"
    ) as caught:
        rtserve.load(fraud_bundle_copy, strict_versions=True)
    assert caught.value.field == "environment"


def test_a_patch_version_difference_is_accepted_silently(fraud_bundle_copy: Path) -> None:
    here = installed_version("scikit-learn")
    assert here is not None
    major, minor = here.split(".")[:2]
    _pretend_built_with(fraud_bundle_copy, "scikit-learn", f"{major}.{minor}.999")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rtserve.load(fraud_bundle_copy, strict_versions=True)


def test_a_framework_that_is_not_installed_is_refused_with_an_install_hint(
    fraud_bundle_copy: Path,
) -> None:
    environment = read_manifest(fraud_bundle_copy).environment
    _edit_and_reseal(
        fraud_bundle_copy,
        environment=environment.model_copy(
            update={
                "packages": {**environment.packages, "rtserve-absent-framework": "1.0"},
                "framework": [*environment.framework, "rtserve-absent-framework"],
            }
        ),
    )
    with pytest.raises(EnvironmentMismatchError, match="not installed; install it"):
        rtserve.load(fraud_bundle_copy)
