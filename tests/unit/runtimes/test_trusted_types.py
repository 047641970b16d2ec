"""Specification: the allow-list of code a bundle may name, checked entry by entry and role by role.

Every listed name must resolve, in the installed libraries, to what its role says (a pure
function, a value type, a state class), so a typo or a library rename fails here rather than
refusing a user's model. Names that execute strings, load files, start processes or reach
attributes by name are refused in every role.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from rtserve.runtimes import trusted_types
from rtserve.runtimes.trusted_types import (
    FUNCTION_EXAMPLES,
    PURE_FUNCTIONS,
    SKOPS_NODE_ROLES,
    STATE_TYPES,
    VALUE_TYPES,
    XGBOOST_WRAPPERS,
    allows,
    allows_any_role,
    is_dotted_name,
    is_estimator_class,
)

#: Names older library releases write for an entry (numpy 1 calls numpy.bool "numpy.bool_").
OTHER_RELEASES = {"numpy.bool_": "numpy.bool"}


def _resolve(name: str) -> Any:
    """The object a dotted name denotes in the installed libraries (for checking the list)."""
    name = OTHER_RELEASES.get(name, name)
    module_name, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _allows(name: str, role: trusted_types.Role) -> bool:
    return allows(name, role, BaseEstimator)


@pytest.mark.parametrize("name", sorted(PURE_FUNCTIONS))
def test_each_allowed_function_is_a_real_callable_that_is_not_a_class(name: str) -> None:
    function = _resolve(name)
    assert callable(function)
    assert not isinstance(function, type)
    assert _allows(name, "function")
    assert _allows(name, "type")  # skops writes some functions as TypeNodes
    assert not _allows(name, "object")


@pytest.mark.parametrize(
    "name", sorted(n for n in PURE_FUNCTIONS if n.startswith("numpy.") and n.count(".") == 1)
)
def test_each_allowed_numpy_function_maps_numbers_to_numbers(name: str) -> None:
    values = np.array([[0.25, 0.5], [1.5, 2.0]])
    result = np.asarray(_resolve(name)(values))
    assert result.dtype.kind in "fiub"


@pytest.mark.parametrize("name", sorted(VALUE_TYPES))
def test_each_value_type_is_a_real_type_allowed_as_a_value_and_an_object(name: str) -> None:
    assert isinstance(_resolve(name), type)
    assert _allows(name, "type")
    assert _allows(name, "object")
    assert not _allows(name, "function")


@pytest.mark.parametrize("name", sorted(STATE_TYPES))
def test_each_state_type_is_a_real_class_allowed_only_as_an_object(name: str) -> None:
    assert isinstance(_resolve(name), type)
    assert _allows(name, "object")
    assert not _allows(name, "type")  # a class skops would hand over as a callable
    assert not _allows(name, "function")


@pytest.mark.parametrize("name", sorted(XGBOOST_WRAPPERS))
def test_each_xgboost_wrapper_is_an_estimator_class_of_xgboost(name: str) -> None:
    import xgboost as xgb

    cls = getattr(xgb, name)
    assert issubclass(cls, BaseEstimator)
    assert is_estimator_class(f"{cls.__module__}.{name}", BaseEstimator)


def test_refusal_messages_give_examples_from_the_list_itself() -> None:
    assert set(FUNCTION_EXAMPLES) <= PURE_FUNCTIONS
    assert all(example in trusted_types.describe_allow_list() for example in FUNCTION_EXAMPLES)


def test_the_three_kinds_of_names_do_not_overlap() -> None:
    assert not PURE_FUNCTIONS & VALUE_TYPES
    assert not PURE_FUNCTIONS & STATE_TYPES
    assert not VALUE_TYPES & STATE_TYPES


@pytest.mark.parametrize(
    "name",
    [
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model.LogisticRegression",  # the public re-export
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",  # private, still an estimator
        "xgboost.sklearn.XGBClassifier",
        "lightgbm.sklearn.LGBMClassifier",
    ],
)
def test_estimator_classes_of_the_three_libraries_are_allowed_as_objects(name: str) -> None:
    assert _allows(name, "object")
    assert not _allows(name, "function")
    assert not _allows(name, "type")


#: Code no bundle may name: executes strings, reads files or pickles, starts processes, reaches
#: attributes or binds arguments by name, or comes from outside the libraries.
DANGEROUS = [
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.open",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.object",
    "builtins.type",
    "posix.system",
    "os.system",
    "subprocess.Popen",
    "importlib.import_module",
    "pickle.loads",
    "joblib.load",
    "functools.partial",
    "operator.attrgetter",
    "operator.methodcaller",
    "_operator.neg",
    "numpy.testing._private.utils.runstring",
    "numpy.testing._private.utils.measure",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.fromfile",
    "numpy.full_like",
    "numpy.sum",
    "numpy.max",
    "numpy.vectorize",
    "numpy.frompyfunc",
    "numpy.f2py.compile",
    "scipy.io.loadmat",
    "sklearn.base.clone",
    "sklearn.utils.validation.check_array",
    "sklearn.utils._testing.assert_run_python_script_without_output",
    "sklearn.utils._bunch.Bunch",  # a scikit-learn class, but not an estimator
    "sklearn.utils.discovery.all_estimators",
    "xgboost.core.DMatrix",
    "xgboost.Booster",  # the real Booster is xgboost.core.Booster, and only as state
    "lightgbm.basic._load_lib",
    "__main__.double_amounts",
    "tests.hostile_bundles._WriteMarker",
]


@pytest.mark.parametrize("name", DANGEROUS)
def test_code_outside_the_list_is_refused_in_every_role(name: str) -> None:
    assert not allows_any_role(name, BaseEstimator)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "sklearn",
        "sklearn..LogisticRegression",
        "sklearn.linear_model.LogisticRegression()",
        "sklearn.linear_model.LogisticRegression; import os",
        "sklearn.linear_model.LogisticRegression ",
        "sklearn/linear_model.LogisticRegression",
        "sklearn.__builtins__.eval",
        "sklearn.base.__class__",
        "sklearn." + "a" * 300,
        "numpy.log1p\n",
    ],
)
def test_malformed_names_are_refused_before_any_lookup(name: str) -> None:
    assert not is_dotted_name(name) or "__" in name
    assert not allows_any_role(name, BaseEstimator)


def test_a_name_that_is_not_a_string_is_refused() -> None:
    assert not is_dotted_name(["sklearn.pipeline.Pipeline"])
    assert not is_dotted_name(None)


def test_an_estimator_defined_outside_the_three_libraries_is_refused() -> None:
    class Custom(BaseEstimator):  # type: ignore[misc]
        pass

    module = types.ModuleType("sklearn_lookalike")
    module.Custom = Custom  # type: ignore[attr-defined]
    Custom.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        assert not is_estimator_class("sklearn_lookalike.Custom", BaseEstimator)
    finally:
        del sys.modules[module.__name__]


def test_a_foreign_estimator_reexported_by_a_library_module_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sklearn.pipeline

    class Planted(BaseEstimator):  # type: ignore[misc]
        pass

    monkeypatch.setattr(sklearn.pipeline, "Planted", Planted, raising=False)
    trusted_types._is_estimator_class.cache_clear()
    try:
        assert not is_estimator_class("sklearn.pipeline.Planted", BaseEstimator)
    finally:
        trusted_types._is_estimator_class.cache_clear()


def test_the_estimator_rule_imports_only_modules_of_the_three_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imported: list[str] = []
    real = importlib.import_module

    def recording(name: str, package: str | None = None) -> types.ModuleType:
        imported.append(name)
        return real(name, package)

    monkeypatch.setattr(trusted_types.importlib, "import_module", recording)
    trusted_types._is_estimator_class.cache_clear()
    try:
        for name in [*DANGEROUS, "sklearn.linear_model._logistic.LogisticRegression"]:
            allows_any_role(name, BaseEstimator)
    finally:
        trusted_types._is_estimator_class.cache_clear()
    assert imported  # the estimator rule did look some names up ...
    assert {m.split(".")[0] for m in imported} <= {"sklearn", "xgboost", "lightgbm"}
    assert not any(
        part in {"tests", "testing", "_testing"} for m in imported for part in m.split(".")
    )


def test_test_helpers_inside_the_libraries_are_never_imported() -> None:
    name = "sklearn.utils._testing.MinimalClassifier"
    was_imported = "sklearn.utils._testing" in sys.modules
    assert not is_estimator_class(name, BaseEstimator)
    assert ("sklearn.utils._testing" in sys.modules) == was_imported


def test_skops_node_kinds_that_reach_code_through_attribute_names_have_no_role() -> None:
    assert {"MethodNode", "PartialNode", "OperatorFuncNode"}.isdisjoint(SKOPS_NODE_ROLES)


def test_every_listed_skops_node_kind_exists_in_the_installed_skops() -> None:
    from skops.io._audit import NODE_TYPE_MAPPING

    known = {loader for loader, _protocol in NODE_TYPE_MAPPING}
    assert set(SKOPS_NODE_ROLES) | trusted_types.SKOPS_REFERENCE_NODES <= known
