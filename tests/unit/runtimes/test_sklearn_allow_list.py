"""Specification: a scikit-learn bundle holds only allow-listed code, at build and at load.

Library models build as skops, model by model. A model holding anything else (a custom function,
a bound method, ``functools.partial``, a function of numpy that is not a pure numeric one) is
refused by default with the reason and the way out; the pickle path is taken only when the caller
chooses it with ``allow_pickle=True``. A skops file is audited node by node before skops imports
anything from it, whether it comes from a bundle or from a user's ``.skops`` model file.
"""

from __future__ import annotations

import functools
import json
import operator
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.bundle.manifest import read_manifest
from rtserve.errors import (
    BundleError,
    UnsafeArtifactError,
    UnsupportedModelError,
    UntrustedCodeError,
)
from rtserve.runtimes import sklearn as sklearn_runtime
from rtserve.runtimes.sklearn import audit_skops_file, read_skops_file
from tests.hostile_bundles import reseal

NUMERIC = ["amount", "hour", "prior_transactions"]


def _numeric(transactions: pd.DataFrame) -> pd.DataFrame:
    return transactions[NUMERIC].fillna(0.0)


def _pipeline(*steps: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(*steps, LogisticRegression(max_iter=200))


# --- library models build as skops, one by one -------------------------------------------------


def _model_zoo() -> dict[str, Any]:
    """Library models as users write them: every one must build as a safe skops bundle."""
    from lightgbm import LGBMClassifier
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_selection import SelectKBest
    from sklearn.linear_model import Ridge, SGDClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from xgboost import XGBClassifier

    return {
        "log1p-then-scale": _pipeline(FunctionTransformer(np.log1p), StandardScaler()),
        "clip-and-sqrt": _pipeline(
            FunctionTransformer(np.clip, kw_args={"a_min": 0, "a_max": 500}),
            FunctionTransformer(np.sqrt),
        ),
        "tanh": _pipeline(FunctionTransformer(np.tanh)),
        "select-k-best": _pipeline(SelectKBest(k=2)),
        "gradient-boosting": GradientBoostingClassifier(n_estimators=5),
        "hist-gradient-boosting": HistGradientBoostingClassifier(max_iter=5),
        "random-forest": RandomForestClassifier(n_estimators=3, max_depth=3),
        "knn-kd-tree": KNeighborsClassifier(algorithm="kd_tree"),
        "sgd": SGDClassifier(loss="log_loss"),
        "xgboost-in-a-pipeline": make_pipeline(
            StandardScaler(), XGBClassifier(n_estimators=3, max_depth=2)
        ),
        "lightgbm-in-a-pipeline": make_pipeline(
            StandardScaler(), LGBMClassifier(n_estimators=3, verbose=-1)
        ),
        "log-target-regressor": TransformedTargetRegressor(
            Ridge(), func=np.log1p, inverse_func=np.expm1
        ),
    }


@pytest.mark.parametrize("name", sorted(_model_zoo()))
def test_library_models_build_as_skops_and_load_back(
    name: str, transactions: pd.DataFrame, fraud_labels: Any, tmp_path: Path
) -> None:
    frame = _numeric(transactions)
    model = _model_zoo()[name]
    target = frame["amount"].to_numpy() if name == "log-target-regressor" else fraud_labels
    model.fit(frame, target)
    bundle = rtserve.build(model, frame, name="zoo", version="1", optimize="off")
    assert bundle.manifest.runtime.format == "skops"
    assert not bundle.manifest.runtime.unsafe
    predictor = rtserve.load(bundle.save(tmp_path / "zoo").path)
    assert predictor.check_parity().passed


def test_the_demo_pipeline_builds_as_skops(tmp_path: Path) -> None:
    from rtserve.demo import card_transactions, fraud_pipeline

    frame, target = card_transactions(600)
    model = fraud_pipeline().set_params(model__max_iter=5).fit(frame, target)
    bundle = rtserve.build(model, frame, name="demo", version="1", optimize="off")
    assert bundle.manifest.runtime.format == "skops"


# --- anything else is refused at build, unless the caller chooses the pickle path ---------------


def _double_amounts(features: Any) -> Any:
    return np.asarray(features, dtype=float) * 2


def test_a_function_outside_the_list_is_refused_at_build_with_the_way_out(
    transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(_double_amounts)).fit(frame, fraud_labels)
    with pytest.raises(UntrustedCodeError) as caught:
        rtserve.build(model, frame, name="double", version="1")
    error = caught.value
    assert error.code == "untrusted_code"
    assert error.field == "model"
    assert error.names == [f"{_double_amounts.__module__}._double_amounts"]
    assert f"{_double_amounts.__module__}._double_amounts (a function)" in error.message
    assert "numpy.log1p" in error.message  # what is allowed instead
    assert "importable module" in error.message
    assert "allow_pickle=True" in error.message
    assert "trust_pickle=True and its pinned digest" in error.message


@pytest.fixture
def notebook_function(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A function defined in ``__main__``, as in a notebook or a script."""

    def scale_amounts(features: Any) -> Any:
        return np.asarray(features, dtype=float) / 100

    scale_amounts.__module__ = "__main__"
    scale_amounts.__qualname__ = "scale_amounts"
    monkeypatch.setattr(sys.modules["__main__"], "scale_amounts", scale_amounts, raising=False)
    return scale_amounts


def test_a_notebook_function_is_refused_by_default_instead_of_silently_pickled(
    notebook_function: Any, transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(notebook_function)).fit(frame, fraud_labels)
    with pytest.raises(UntrustedCodeError, match=r"__main__\.scale_amounts \(a function\)") as c:
        rtserve.build(model, frame, name="notebook", version="1")
    assert "notebook or __main__" in c.value.message


def test_with_allow_pickle_a_notebook_function_is_pickled_with_a_warning_that_says_where_it_loads(
    notebook_function: Any, transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(notebook_function)).fit(frame, fraud_labels)
    with pytest.warns(
        UserWarning, match=r"stored the model as a pickle \(allow_pickle=True\)"
    ) as w:
        bundle = rtserve.build(model, frame, name="notebook", version="1", allow_pickle=True)
    assert "defined in __main__" in str(w[0].message)
    assert (bundle.manifest.runtime.format, bundle.manifest.runtime.unsafe) == ("pickle", True)
    assert "__main__.scale_amounts" in bundle.manifest.runtime.options["pickle_reason"]


def test_allow_pickle_changes_nothing_for_a_model_skops_can_hold(
    transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(np.log1p)).fit(frame, fraud_labels)
    bundle = rtserve.build(model, frame, name="m", version="1", optimize="off", allow_pickle=True)
    assert bundle.manifest.runtime.format == "skops"


@pytest.mark.parametrize(
    ("step", "refused"),
    [
        (functools.partial(np.clip, a_min=0, a_max=500), "functools.partial"),
        (operator.attrgetter("values"), "operator.attrgetter"),
        (np.asarray, "numpy.asarray"),  # a numpy function, but not on the reviewed list
        (operator.neg, "_operator.neg"),
    ],
    ids=["partial", "attrgetter", "numpy-not-listed", "builtin-function"],
)
def test_callables_that_are_not_listed_pure_functions_are_refused_at_build(
    step: Any, refused: str, transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(step)).fit(frame, fraud_labels)
    with pytest.raises(UntrustedCodeError) as caught:
        rtserve.build(model, frame, name="m", version="1")
    assert refused in caught.value.names


# --- the audit reads the skops file itself, before skops imports anything ----------------------


def _schema_of(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json"))


def _rewrite_schema(path: Path, schema: Any) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _function_nodes(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("__loader__") == "FunctionNode":
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@pytest.fixture
def log1p_bundle(transactions: pd.DataFrame, fraud_labels: Any, tmp_path: Path) -> Path:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(np.log1p)).fit(frame, fraud_labels)
    bundle = rtserve.build(model, frame, name="log", version="1", optimize="off")
    return bundle.save(tmp_path / "log-1").path


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("posix", "system"),
        ("numpy.testing._private.utils", "runstring"),
        ("numpy", "load"),
    ],
)
def test_a_function_renamed_inside_the_skops_file_is_refused_at_load(
    log1p_bundle: Path, module: str, name: str
) -> None:
    path = log1p_bundle / "model" / "model.skops"
    schema = _schema_of(path)
    (node,) = _function_nodes(schema)
    node.update({"__module__": module, "__class__": name})
    _rewrite_schema(path, schema)
    reseal(log1p_bundle)  # the attacker recomputes the hashes: they prove nothing
    with pytest.raises(UntrustedCodeError, match=rf"{module}\.{name} \(a function\)") as caught:
        rtserve.load(log1p_bundle)
    assert caught.value.field == "model/model.skops"
    assert caught.value.names == [f"{module}.{name}"]


@pytest.mark.parametrize("loader", ["MethodNode", "OperatorFuncNode", "PartialNode", "EvilNode"])
def test_node_kinds_that_reach_code_by_attribute_name_are_refused_at_load(
    log1p_bundle: Path, loader: str
) -> None:
    path = log1p_bundle / "model" / "model.skops"
    schema = _schema_of(path)
    (node,) = _function_nodes(schema)
    node["__loader__"] = loader
    _rewrite_schema(path, schema)
    reseal(log1p_bundle)
    with pytest.raises(UntrustedCodeError, match=r"numpy\.log1p"):
        rtserve.load(log1p_bundle)


def test_a_manifest_that_does_not_list_the_types_does_not_bypass_the_file_audit(
    log1p_bundle: Path,
) -> None:
    path = log1p_bundle / "model" / "model.skops"
    schema = _schema_of(path)
    (node,) = _function_nodes(schema)
    node.update({"__module__": "builtins", "__class__": "exec"})
    _rewrite_schema(path, schema)
    runtime = read_manifest(log1p_bundle).runtime
    reseal(log1p_bundle, runtime=runtime.model_copy(update={"options": {**runtime.options}}))
    with pytest.raises(UntrustedCodeError, match=r"model/model.skops names builtins\.exec"):
        rtserve.load(log1p_bundle)


def test_a_manifest_whose_trusted_types_is_not_a_list_of_names_is_refused(
    log1p_bundle: Path,
) -> None:
    runtime = read_manifest(log1p_bundle).runtime
    options = {**runtime.options, "trusted_types": "builtins.eval"}
    reseal(log1p_bundle, runtime=runtime.model_copy(update={"options": options}))
    with pytest.raises(UntrustedCodeError, match="must be a list of dotted type names"):
        rtserve.load(log1p_bundle)


def test_the_file_audit_never_lets_skops_import_what_it_refuses(
    log1p_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io as sio

    calls: list[str] = []
    monkeypatch.setattr(sio, "load", lambda *a, **k: calls.append("load"))
    monkeypatch.setattr(sio, "get_untrusted_types", lambda **k: calls.append("types") or [])
    path = log1p_bundle / "model" / "model.skops"
    schema = _schema_of(path)
    (node,) = _function_nodes(schema)
    node.update({"__module__": "builtins", "__class__": "eval"})
    _rewrite_schema(path, schema)
    needed, refused = audit_skops_file(path)
    assert (needed, refused) == ([], {"builtins.eval": "a function"})
    assert calls == []  # skops never parsed the hostile file into nodes, let alone loaded it


def test_a_schema_over_the_size_limit_is_refused_unread(
    log1p_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sklearn_runtime, "SKOPS_SCHEMA_MAX_BYTES", 100)
    with pytest.raises(BundleError, match="over the 100-byte limit"):
        audit_skops_file(log1p_bundle / "model" / "model.skops")


def test_a_file_that_is_not_a_skops_zip_is_a_bundle_error(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a readable skops file"):
        audit_skops_file(path)


def test_a_users_skops_model_file_naming_exec_is_refused_before_loading(
    tmp_path: Path, transactions: pd.DataFrame, fraud_labels: Any
) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from tests.hostile_bundles import exec_chain_pipeline

    marker = tmp_path / "ran.txt"
    frame = _numeric(transactions)
    model = exec_chain_pipeline(
        _pipeline().fit(frame, fraud_labels), f"open({str(marker)!r}, 'w')\n"
    )
    assert isinstance(model.steps[0][1], FunctionTransformer)
    sio.dump(model, tmp_path / "model.skops")
    with pytest.raises(UntrustedCodeError, match=r"numpy\.testing\._private\.utils\.runstring"):
        read_skops_file(tmp_path / "model.skops")
    assert not marker.exists()


def test_the_build_refuses_before_sealing_so_no_bundle_is_left_behind(
    transactions: pd.DataFrame, fraud_labels: Any, tmp_path: Path
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    frame = _numeric(transactions)
    model = _pipeline(FunctionTransformer(np.asarray)).fit(frame, fraud_labels)
    with pytest.raises(UntrustedCodeError):
        rtserve.build(model, frame, name="m", version="1").save(tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_model_skops_cannot_represent_is_refused_by_default_and_pickled_only_when_allowed(
    transactions: pd.DataFrame,
) -> None:
    from sklearn.cluster import Birch  # skops: "Objects of type Birch are not supported yet"

    frame = _numeric(transactions)
    model = Birch(n_clusters=3).fit(frame)
    with pytest.raises(UnsupportedModelError, match="skops cannot represent") as caught:
        rtserve.build(model, frame, name="birch", version="1", optimize="off")
    assert "allow_pickle=True" in caught.value.message
    with pytest.warns(UserWarning, match="stored the model as a pickle"):
        bundle = rtserve.build(
            model, frame, name="birch", version="1", optimize="off", allow_pickle=True
        )
    assert bundle.manifest.runtime.format == "pickle"


def test_an_older_skops_protocol_is_refused_because_its_readers_import_names_from_content(
    log1p_bundle: Path,
) -> None:
    path = log1p_bundle / "model" / "model.skops"
    schema = _schema_of(path)
    (node,) = _function_nodes(schema)
    # Protocol 0's FunctionNode imports content.module_path + content.function, not the names
    # the node itself shows: a benign-looking node that would import builtins.eval.
    node["content"] = {"module_path": "builtins", "function": "eval"}
    schema["protocol"] = 0
    _rewrite_schema(path, schema)
    reseal(log1p_bundle)
    with pytest.raises(UnsafeArtifactError, match="skops file protocol 0") as caught:
        rtserve.load(log1p_bundle)
    assert caught.value.field == "model/model.skops"
