"""Real bundles for the rollout tests: versions of one ``dense`` model, and one that fails.

The failing version is a real scikit-learn pipeline (``log`` then logistic regression) built on
positive data only: any negative value in a row makes the log NaN and the regression refuse the
row, so it fails on exactly the rows a test chooses to send it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

import rtserve
from tests.registry_support import COLUMNS, build_version, frame


def build_failing_version(root: Path, version: str, name: str = "dense") -> Path:
    """A version that answers rows with positive values and fails on any negative one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = frame().abs() + 0.01
    y = (X.a > X.a.median()).astype(int)
    model = make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(X, y)
    target = root / f"{name}-{version}"
    rtserve.build(model, X, name=name, version=version, optimize="off",
                  validation_rows=20).save(target)  # fmt: skip
    return target


def build_flipped_version(root: Path, version: str, name: str = "dense") -> Path:
    """A healthy version that disagrees with ``build_version``'s on every row (labels flipped
    at training)."""
    from sklearn.linear_model import LogisticRegression

    X = frame()
    model = LogisticRegression().fit(X, (X.a <= 0).astype(int))
    target = root / f"{name}-{version}"
    rtserve.build(model, X, name=name, version=version, optimize="off",
                  validation_rows=20).save(target)  # fmt: skip
    return target


def build_versions(root: Path, versions: tuple[str, ...] = ("1", "2")) -> dict[str, Path]:
    """Healthy versions of ``dense`` (the same model: they agree on every row)."""
    return {v: build_version(root, v) for v in versions}


def positive_record(rng: random.Random) -> dict[str, float]:
    """A row every version answers."""
    return {c: rng.uniform(0.1, 2.0) for c in COLUMNS}


def negative_record(rng: random.Random) -> dict[str, float]:
    """A row the failing version refuses (valid input: the schema allows negative values)."""
    return {c: -rng.uniform(0.1, 2.0) for c in COLUMNS}


def body(record: dict[str, Any]) -> dict[str, Any]:
    """A records-API request body for one row."""
    return {"instances": [record]}
