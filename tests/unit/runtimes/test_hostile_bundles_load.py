"""Specification: a re-sealed hostile bundle is refused by ``rtserve.load`` and runs nothing.

The bundles come from ``tests/hostile_bundles.py``: real builds, edited and re-sealed as an
attacker with write access would, so every hash and the digest check out. ``rtserve verify`` and
``rtserve serve`` are driven against the same bundles in ``tests/e2e/test_hostile_bundles.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rtserve
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import read_manifest
from rtserve.errors import BundleFormatError, UntrustedCodeError
from tests.hostile_bundles import (
    BUILDERS,
    HostileBundle,
    exec_chain_bundle,
    reseal,
    xgboost_class_bundle,
)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def test_a_hostile_bundle_passes_every_hash_check(hostile: HostileBundle) -> None:
    Bundle.open(hostile.path).verify()  # hashes are no defence: the attacker recomputed them


def test_loading_a_hostile_bundle_is_refused_naming_the_code_and_nothing_runs(
    hostile: HostileBundle,
) -> None:
    with pytest.raises(UntrustedCodeError) as caught:
        rtserve.load(hostile.path).predict(hostile.rows())
    assert hostile.names in caught.value.message
    assert hostile.names in caught.value.names
    assert "allow-list" in caught.value.message or "not an XGBoost wrapper" in caught.value.message
    assert not hostile.marker.exists()


def test_trusting_pickles_does_not_make_a_hostile_skops_bundle_load(hostile: HostileBundle) -> None:
    digest = Bundle.open(hostile.path).digest
    with pytest.raises(UntrustedCodeError):
        rtserve.load(hostile.path, trust_pickle=True, pinned_digest=digest)
    assert not hostile.marker.exists()


def test_the_exec_chain_is_refused_by_the_file_audit_even_when_the_manifest_lists_nothing_new(
    tmp_path: Path,
) -> None:
    hostile = exec_chain_bundle(tmp_path)
    runtime = read_manifest(hostile.path).runtime
    # Keep the list skops was told to trust for the original model: only the file names the code.
    options = {**runtime.options, "trusted_types": ["numpy.dtype"]}
    reseal(hostile.path, runtime=runtime.model_copy(update={"options": options}))
    with pytest.raises(UntrustedCodeError, match=r"model/model\.skops names .*runstring") as c:
        rtserve.load(hostile.path).predict(hostile.rows())
    assert c.value.field == "model/model.skops"
    assert not hostile.marker.exists()


def test_an_xgboost_class_option_is_never_looked_up_beyond_the_wrapper_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xgboost as xgb

    hostile = xgboost_class_bundle(tmp_path, class_name="RtserveProbe")

    def probe() -> None:
        hostile.marker.write_text("the manifest's class name was called")

    monkeypatch.setattr(xgb, "RtserveProbe", probe, raising=False)
    with pytest.raises(UntrustedCodeError, match="not an XGBoost wrapper") as caught:
        rtserve.load(hostile.path)
    assert caught.value.field == "runtime.options.class"
    assert not hostile.marker.exists()


@pytest.mark.parametrize(
    "class_name", ["__class__", "XGBModel", "DMatrix", "xgboost.XGBClassifier"]
)
def test_an_xgboost_class_option_naming_anything_but_a_wrapper_is_refused(
    tmp_path: Path, class_name: str
) -> None:
    hostile = xgboost_class_bundle(tmp_path, class_name=class_name)
    with pytest.raises(UntrustedCodeError, match=r"runtime\.options\.class"):
        rtserve.load(hostile.path)


def test_an_xgboost_bundle_of_unknown_kind_is_a_format_error(tmp_path: Path) -> None:
    hostile = xgboost_class_bundle(tmp_path, class_name="XGBClassifier")
    runtime = read_manifest(hostile.path).runtime
    options = {**runtime.options, "kind": "plugin"}
    reseal(hostile.path, runtime=runtime.model_copy(update={"options": options}))
    with pytest.raises(BundleFormatError, match="'wrapper' or a 'booster'"):
        rtserve.load(hostile.path)


def test_the_unedited_xgboost_bundle_still_loads(tmp_path: Path) -> None:
    hostile = xgboost_class_bundle(tmp_path, class_name="XGBClassifier")  # the original class
    assert rtserve.load(hostile.path).check_parity().passed


@pytest.mark.parametrize("adapter", ["builtins.eval", "rtserve.runtimes.sklearn:SklearnAdapter"])
def test_the_adapter_a_manifest_names_is_only_ever_one_of_the_built_in_adapters(
    tmp_path: Path, adapter: str
) -> None:
    hostile = xgboost_class_bundle(tmp_path, class_name="XGBClassifier")
    runtime = read_manifest(hostile.path).runtime
    reseal(hostile.path, runtime=runtime.model_copy(update={"adapter": adapter}))
    with pytest.raises(BundleFormatError, match="runtime adapter"):
        rtserve.load(hostile.path)
