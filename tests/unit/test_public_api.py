"""The public API is exactly what ``rtserve/__init__.py`` re-exports, listed once in a sorted ``__all__``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import rtserve

INIT_FILE = Path(rtserve.__file__)


def _reexported_names() -> set[str]:
    """Names bound by ``from rtserve... import name`` in ``rtserve/__init__.py``'s type-checking
    block (the lazy ``__getattr__`` imports the same names on first use)."""
    tree = ast.parse(INIT_FILE.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rtserve"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _own_docstring(obj: object) -> str:
    """The docstring written for ``obj`` itself, not one inherited or generated for it."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    if (
        isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and doc.startswith(f"{obj.__name__}(")
    ):
        return ""  # the signature dataclasses write when a class has no docstring
    return doc.strip()


def test_all_is_sorted():
    assert rtserve.__all__ == sorted(rtserve.__all__)


def test_all_has_no_duplicates():
    assert len(rtserve.__all__) == len(set(rtserve.__all__))


def test_all_equals_the_names_reexported_in_init():
    assert set(rtserve.__all__) == _reexported_names()


def test_every_lazy_export_names_the_module_the_type_checker_imports_it_from():
    tree = ast.parse(INIT_FILE.read_text(encoding="utf-8"))
    imported = {
        alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rtserve")
        for alias in node.names
    }
    assert imported == rtserve._EXPORTS


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rtserve.nope  # noqa: B018 - the lookup is the test


def test_every_public_attribute_of_the_package_is_listed_in_all():
    for name in rtserve.__all__:
        getattr(rtserve, name)  # lazy exports are bound on first use
    public = {
        name
        for name, value in vars(rtserve).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # subpackages, bound once imported
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }
    assert public == set(rtserve.__all__)


def test_every_name_in_all_is_importable_with_from_import():
    for name in rtserve.__all__:
        namespace: dict[str, object] = {}
        exec(f"from rtserve import {name}", namespace)  # noqa: S102 - names come from __all__
        assert namespace[name] is getattr(rtserve, name)


def test_every_public_name_has_its_own_docstring():
    undocumented = [name for name in rtserve.__all__ if not _own_docstring(getattr(rtserve, name))]
    assert undocumented == []


def test_every_public_function_and_class_is_defined_inside_rtserve():
    foreign = [
        name
        for name in rtserve.__all__
        if (inspect.isclass(obj := getattr(rtserve, name)) or inspect.isfunction(obj))
        and not obj.__module__.startswith("rtserve.")
    ]
    assert foreign == []


def test_importing_rtserve_loads_no_web_framework_and_no_optional_ml_framework():
    # A fresh interpreter: this test session has long since imported everything.
    heavy = [
        "fastapi", "lightgbm", "pandas", "sklearn", "starlette", "torch", "uvicorn", "xgboost",
    ]  # fmt: skip
    code = f"import sys, rtserve; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == []


def test_rtserve_build_stays_the_function_once_every_subpackage_is_imported():
    import rtserve.building.builder
    import rtserve.building.reseal

    assert callable(rtserve.build)
    assert rtserve.build is rtserve.building.builder.build
