"""Tiny fast bundles in a registry, and the promote/approve/rollback steps the swap tests drive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rtserve
from rtserve.registry import Pointer, Registry

MAINTAINER, APPROVER = "key:mae", "key:ann"
COLUMNS = ["a", "b", "c"]


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, 3)), columns=COLUMNS)


def _model(flip: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression

    X = frame()
    y = (X.a > 0).astype(int)
    return LogisticRegression().fit(X, 1 - y if flip else y)


def build_version(root: Path, version: str, name: str = "dense") -> Path:
    """A native (no ONNX) logistic regression bundle: loads and warms up in milliseconds."""
    target = root / f"{name}-{version}"
    rtserve.build(_model(), frame(), name=name, version=version, optimize="off",
                  validation_rows=20).save(target)  # fmt: skip
    return target


def build_broken_version(root: Path, version: str, name: str = "dense") -> Path:
    """A bundle whose model was swapped for another after the build, hashes recomputed: its
    integrity checks pass, but the warm-up no longer reproduces the recorded outputs."""
    from tests.hostile_bundles import replace_skops_model

    target = build_version(root, version, name)
    replace_skops_model(target, _model(flip=True))
    return target


def open_registry(directory: Path) -> Registry:
    """A registry with an admin, a maintainer and an approver."""
    registry = Registry.open(directory)
    registry.init("key:admin")
    registry.grant("key:admin", MAINTAINER, "maintainer")
    registry.grant("key:admin", APPROVER, "approver")
    return registry


def push(registry: Registry, bundle: Path) -> None:
    registry.push(bundle, MAINTAINER, owner="risk-team", intended_use="tests")


def to_production(registry: Registry, version: str, name: str = "dense") -> None:
    """Promote ``version`` to production with the approval the default policy needs."""
    request = registry.promote(name, version, to="production", actor=MAINTAINER, reason="test")
    assert not isinstance(request, Pointer)
    registry.approve(request.id, actor=APPROVER, comment="parity checked in the test")


def rollback(registry: Registry, name: str = "dense") -> str:
    pointer = registry.rollback(name, actor=MAINTAINER, reason="test rollback")
    assert pointer.version is not None
    return pointer.version


def record(seed: int = 0) -> dict[str, float]:
    row = frame(1, seed).iloc[0]
    return {c: float(row[c]) for c in COLUMNS}
